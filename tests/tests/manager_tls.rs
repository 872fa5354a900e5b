//! HTTPS end to end through the real binaries: a test CA made here signs the manager's
//! certificate; `aac-host manager --tls-cert/--tls-key` serves, `aac-host runs create` and a
//! runner (`aac-host runner --ca-cert`, a real turn in Docker) work over https with their own
//! role's token; a runner token is refused on `runs create` (403); a plain-HTTP client, and a
//! client that does not trust the CA, fail at once with an error saying what to do.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use aac_tests::{aac_host_binary, plugin};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// Writes a new CA as `dir/CA_NAME` and, signed by it, `server.pem` (for 127.0.0.1 and
/// localhost) and `server.key` into `dir` (replacing those there).
fn test_pki(dir: &Path, ca_name: &str) -> PathBuf {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "aac-host test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join(ca_name), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    dir.join(ca_name)
}

fn aac_host(dir: &Path, token: &str, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(aac_host_binary());
    command
        .args(args)
        .env("AAC_MANAGER_TOKEN", token)
        .env("AAC_CACHE_DIR", dir.join("cache"))
        .env_remove("AAC_CA_CERT")
        .env_remove("AAC_TOKEN_FILE");
    command
}

async fn output(mut command: std::process::Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_a_runner_turn_over_https_with_a_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = test_pki(dir, "ca.pem");
    let ca = ca.to_str().unwrap();
    std::fs::write(
        dir.join("tokens"),
        "runner:tls-runner-token\nclient:tls-client-token\n",
    )
    .unwrap();
    std::fs::write(dir.join("runner.token"), "tls-runner-token\n").unwrap();
    let port = aac_tests::free_port();
    let mut manager = tokio::process::Command::new(aac_host_binary())
        .args(["manager", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(dir.join("manager.redb"))
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .arg("--tls-cert")
        .arg(dir.join("server.pem"))
        .arg("--tls-key")
        .arg(dir.join("server.key"))
        .env_remove("AAC_MANAGER_TOKEN")
        .stderr(std::fs::File::create(dir.join("manager.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let https = format!("https://127.0.0.1:{port}");
    let client_args = ["--manager-url", https.as_str(), "--ca-cert", ca];

    // The client's view over https: create (retrying while the manager starts), enqueue.
    let started = Instant::now();
    let created = loop {
        let mut create = aac_host(dir, "tls-client-token", &["runs", "create", "shell"]);
        create.args(client_args);
        let out = output(create).await;
        if out.status.success() {
            break out;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "runs create over https: {}",
            text(&out)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let run: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let run = run["id"].as_str().unwrap().to_owned();
    let mut enqueue = aac_host(
        dir,
        "tls-client-token",
        &["runs", "enqueue", &run, "echo over-tls"],
    );
    enqueue.args(client_args);
    let out = output(enqueue).await;
    assert!(out.status.success(), "{}", text(&out));

    // A runner token may not create runs: a 403 naming the role, not a retry.
    let mut create = aac_host(dir, "tls-runner-token", &["runs", "create", "shell"]);
    create.args(client_args);
    let out = output(create).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("HTTP 403 forbidden") && text(&out).contains("runner token"),
        "{}",
        text(&out)
    );

    // A runner (its token from a file) does the turn over https.
    let mut runner = aac_host(dir, "", &["runner", "--plugin"]);
    runner
        .arg(plugin("shell"))
        .args(["--run-id", &run, "--one-shot", "--json", "--lease", "10s"])
        .args(client_args)
        .arg("--token-file")
        .arg(dir.join("runner.token"))
        .env_remove("AAC_MANAGER_TOKEN");
    let out = output(runner).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut events = aac_host(dir, "tls-client-token", &["runs", "events", &run]);
    events.args(client_args);
    let out = output(events).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"over-tls\""),
        "the turn's output came back over https: {}",
        text(&out)
    );

    // Plain HTTP to the TLS port: an answer that says to use https://.
    let mut plain = aac_host(dir, "tls-client-token", &["runs", "list"]);
    plain.args(["--manager-url", &format!("http://127.0.0.1:{port}")]);
    let out = output(plain).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("serves HTTPS only: use an https:// manager URL"),
        "{}",
        text(&out)
    );
    // Refused on the first answer, not retried until the client's deadline.
    assert!(text(&out).contains("HTTP 400"), "{}", text(&out));

    // A client that does not trust the test CA: a certificate error naming --ca-cert.
    let mut untrusted = aac_host(dir, "tls-client-token", &["runs", "list"]);
    untrusted.args(["--manager-url", https.as_str()]);
    let out = output(untrusted).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--ca-cert") && !text(&out).contains("gave up after"),
        "{}",
        text(&out)
    );

    // `doctor` reaches the HTTPS manager through the CA and checks the runner's token.
    let mut doctor = aac_host(dir, "", &["doctor", "--json"]);
    doctor
        .args(client_args)
        .arg("--token-file")
        .arg(dir.join("runner.token"))
        .env_remove("AAC_MANAGER_TOKEN")
        .current_dir(dir);
    let out = output(doctor).await;
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    for check in ["manager", "token"] {
        let found = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == check)
            .unwrap_or_else(|| panic!("no {check} check: {report:#}"));
        assert_eq!(found["status"], "ok", "{report:#}");
    }

    // A renewed certificate (from another CA here) is served after SIGHUP, without a restart;
    // a certificate file that cannot be used keeps the one in force.
    let ca2 = test_pki(dir, "ca2.pem");
    let hang_up = |manager: &tokio::process::Child| {
        let pid = manager.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    hang_up(&manager);
    let list_with = |ca: &Path| {
        let mut list = aac_host(dir, "tls-client-token", &["runs", "list"]);
        list.args(["--manager-url", https.as_str(), "--ca-cert"])
            .arg(ca);
        output(list)
    };
    let started = Instant::now();
    while !list_with(&ca2).await.status.success() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let old = list_with(Path::new(ca)).await;
    assert_eq!(
        old.status.code(),
        Some(2),
        "the old CA no longer fits: {}",
        text(&old)
    );
    std::fs::write(dir.join("server.pem"), "not a certificate").unwrap();
    hang_up(&manager);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = list_with(&ca2).await;
    assert!(kept.status.success(), "{}", text(&kept));
    let log = std::fs::read_to_string(dir.join("manager.log")).unwrap();
    assert!(
        log.contains("TLS certificate re-read") && log.contains("TLS certificate not re-read"),
        "{log}"
    );

    manager.start_kill().unwrap();
    manager.wait().await.unwrap();
}
