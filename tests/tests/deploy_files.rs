//! The deploy files check offline: the systemd units pass `systemd-analyze verify` (when it is
//! installed; else they are parsed) with the real binary in `ExecStart`, the Kubernetes manifests
//! parse into the typed objects of `deploy_files/k8s.rs` and refer only to what they define, every
//! `aac-host` option they pass exists on that subcommand, and each runner's stop timeout is its
//! drain timeout plus 30 s.

// Every field is parsed so that its type is checked; not every one is read.
#[allow(dead_code)]
#[path = "deploy_files/k8s.rs"]
mod k8s;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aac_tests::aac_host_binary;
use k8s::{Container, Manifest, PodSpec};

/// What a runner may take after its drain timeout to cancel its turns and exit.
const ABORT_BOUND: Duration = Duration::from_secs(30);

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("deploy")
}

/// `aac-host SUBCOMMAND --help`, to check the options a deploy file passes exist.
fn help(subcommand: &str) -> String {
    let out = Command::new(aac_host_binary())
        .args([subcommand, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "aac-host {subcommand} --help");
    String::from_utf8(out.stdout).unwrap()
}

/// Every `--option` of `args` (an aac-host command line after the binary) is one its subcommand
/// offers; returns the value of `--drain-timeout` when given.
fn check_args(args: &[String], what: &str) -> Option<Duration> {
    let subcommand = &args[0];
    let help = help(subcommand);
    for option in args.iter().filter(|a| a.starts_with("--")) {
        let name = option.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{name} ")) || help.contains(&format!("{name}\n")),
            "{what}: `aac-host {subcommand}` has no option {name}"
        );
    }
    let drain = args.iter().position(|a| a == "--drain-timeout")?;
    Some(parse_duration(&args[drain + 1]))
}

/// `10m`, `630s`, `20s`: the forms the deploy files use.
fn parse_duration(text: &str) -> Duration {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap());
    let number: u64 = number.parse().unwrap();
    match unit {
        "s" => Duration::from_secs(number),
        "m" | "min" => Duration::from_secs(number * 60),
        other => panic!("unit {other:?} in {text:?}"),
    }
}

/// `[Section] key=value` lines of a unit file (comments and blanks skipped).
fn unit_keys(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut keys: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        assert!(!section.is_empty(), "{line} outside a section");
        keys.entry((section.clone(), key.to_owned()))
            .or_default()
            .push(value.to_owned());
    }
    keys
}

#[test]
fn systemd_units_verify_and_match_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let binary = aac_host_binary();
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    for unit in ["aac-manager.service", "aac-runner.service"] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).unwrap();
        let keys = unit_keys(&text);
        let get = |section: &str, key: &str| {
            keys.get(&(section.to_owned(), key.to_owned()))
                .and_then(|v| v.last())
                .unwrap_or_else(|| panic!("{unit}: no {key}= in [{section}]"))
                .clone()
        };
        let exec = get("Service", "ExecStart");
        let args: Vec<String> = exec.split_whitespace().skip(1).map(str::to_owned).collect();
        assert!(
            exec.starts_with("/usr/local/bin/aac-host "),
            "{unit}: {exec}"
        );
        let drain = check_args(&args, unit);
        let stop = parse_duration(&get("Service", "TimeoutStopSec"));
        match drain {
            Some(drain) => assert_eq!(stop, drain + ABORT_BOUND, "{unit}: TimeoutStopSec"),
            // The manager ends open requests within 10 s of SIGTERM.
            None => assert!(stop >= Duration::from_secs(10), "{unit}: TimeoutStopSec"),
        }
        get("Install", "WantedBy");

        if analyze.as_ref().is_ok_and(|o| o.status.success()) {
            // The unit as installed, with the binary where this build has it.
            let installed = dir.path().join(unit);
            std::fs::write(
                &installed,
                text.replace("/usr/local/bin/aac-host", binary.to_str().unwrap()),
            )
            .unwrap();
            let out = Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&installed)
                .output()
                .unwrap();
            let complaints = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && complaints.trim().is_empty(),
                "systemd-analyze verify {unit}:\n{complaints}"
            );
        }
    }
}

fn manifests(file: &str) -> Vec<Manifest> {
    let text = std::fs::read_to_string(deploy().join("k8s").join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value =
                serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            Manifest::parse(value, file)
        })
        .collect()
}

/// The pod refers only to volumes it has and ports it names; the container runs aac-host with
/// options that exist; a runner's grace period is its drain timeout plus the abort bound.
fn check_pod<'a>(pod: &'a PodSpec, what: &str) -> &'a Container {
    assert_eq!(pod.containers.len(), 1, "{what}");
    let container = &pod.containers[0];
    assert!(container.image.starts_with("aac/aac-host:"), "{what}");
    for mount in &container.volume_mounts {
        assert!(
            pod.volumes.iter().any(|v| v.name == mount.name),
            "{what}: mount of undefined volume {}",
            mount.name
        );
    }
    for volume in &pod.volumes {
        let sources = [
            volume.persistent_volume_claim.is_some(),
            volume.secret.is_some(),
            volume.config_map.is_some(),
            volume.host_path.is_some(),
            volume.empty_dir.is_some(),
        ];
        assert_eq!(
            sources.iter().filter(|s| **s).count(),
            1,
            "{what}: volume {}",
            volume.name
        );
    }
    for probe in [&container.liveness_probe, &container.readiness_probe]
        .into_iter()
        .flatten()
    {
        assert!(
            container
                .ports
                .iter()
                .any(|p| p.name == probe.http_get.port),
            "{what}: probe on unknown port {}",
            probe.http_get.port
        );
        assert!(["/healthz", "/readyz"].contains(&probe.http_get.path.as_str()));
    }
    for env in &container.env {
        assert!(
            env.value.is_some() != env.value_from.is_some(),
            "{what}: env {}",
            env.name
        );
    }
    // `$(VAR)` in args must name an env var of the container (Kubernetes expands those).
    for arg in &container.args {
        if let Some(start) = arg.find("$(") {
            let name = &arg[start + 2..arg[start..].find(')').unwrap() + start];
            assert!(
                container.env.iter().any(|e| e.name == name),
                "{what}: $({name})"
            );
        }
    }
    let drain = check_args(&container.args, what);
    if let Some(drain) = drain {
        assert_eq!(
            Duration::from_secs(pod.termination_grace_period_seconds),
            drain + ABORT_BOUND,
            "{what}: terminationGracePeriodSeconds"
        );
    }
    container
}

fn env_field<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value_from.as_ref())
        .map(|v| v.field_ref.field_path.as_str())
}

#[test]
fn kubernetes_manifests_are_well_formed_and_consistent() {
    // The manager: a PVC, a Deployment that mounts it, a Service that selects it.
    let manager = manifests("manager.yaml");
    let mut claims = Vec::new();
    let mut pods = Vec::new();
    let mut services = Vec::new();
    for object in &manager {
        match object {
            Manifest::Pvc(pvc) => {
                assert!(pvc.spec.resources.requests.contains_key("storage"));
                claims.push(pvc.metadata.name.clone());
            }
            Manifest::Deployment(d) => pods.push(d),
            Manifest::Service(s) => services.push(s),
            Manifest::Job(_) => panic!("manager.yaml has a Job"),
        }
    }
    assert_eq!((claims.len(), pods.len(), services.len()), (1, 1, 1));
    let deployment = pods[0];
    assert_eq!(deployment.spec.replicas, 1, "one writer of the store");
    assert_eq!(
        deployment.spec.strategy.as_ref().map(|s| s.kind.as_str()),
        Some("Recreate"),
        "two managers never share the store"
    );
    for (k, v) in &deployment.spec.selector.match_labels {
        assert_eq!(deployment.spec.template.metadata.labels.get(k), Some(v));
    }
    let pod = &deployment.spec.template.spec;
    let container = check_pod(pod, "manager Deployment");
    assert_eq!(container.args[0], "manager");
    assert!(pod.volumes.iter().any(|v| {
        v.persistent_volume_claim
            .as_ref()
            .is_some_and(|c| claims.contains(&c.claim_name))
    }));
    let service = services[0];
    assert_eq!(
        service.spec.selector,
        deployment.spec.template.metadata.labels
    );
    for port in &service.spec.ports {
        assert!(container.ports.iter().any(|p| p.name == port.target_port));
    }

    // The runner pool: pool mode, a drain timeout matched by the grace period.
    let pool = manifests("runner-pool.yaml");
    let [Manifest::Deployment(pool)] = pool.as_slice() else {
        panic!("runner-pool.yaml: one Deployment");
    };
    let container = check_pod(&pool.spec.template.spec, "runner Deployment");
    assert_eq!(container.args[0], "runner");
    assert!(container.args.contains(&"--max-runs".to_owned()));
    assert!(container.args.contains(&"--drain-timeout".to_owned()));

    // One run as a Job: --run-id, the job and pod names from the downward API.
    let job = manifests("runner-job.yaml");
    let [Manifest::Job(job)] = job.as_slice() else {
        panic!("runner-job.yaml: one Job");
    };
    let pod = &job.spec.template.spec;
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let container = check_pod(pod, "runner Job");
    assert_eq!(container.args[0], "runner");
    assert!(container.args.contains(&"--run-id".to_owned()));
    assert_eq!(
        env_field(container, "AAC_JOB_NAME"),
        Some("metadata.labels['job-name']")
    );
    assert_eq!(env_field(container, "HOSTNAME"), Some("metadata.name"));
}

/// `cargo xtask host-image` imports aac-host (this build's binary) as an image whose entrypoint
/// is aac-host: `docker run IMAGE --version` prints the versions, `manager --help` works.
#[test]
fn the_host_image_runs_aac_host() {
    let root = deploy().parent().unwrap().to_owned();
    let tag = format!("aac/aac-host:test-{}", std::process::id());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(&root)
        .args(["run", "-q", "-p", "xtask", "--", "host-image", "--binary"])
        .arg(aac_host_binary())
        .args(["--tag", &tag])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let run = |args: &[&str]| {
        Command::new("docker")
            .args(["run", "--rm", &tag])
            .args(args)
            .output()
            .unwrap()
    };
    let version = run(&["--version"]);
    let manager_help = run(&["manager", "--help"]);
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&version.stderr)
    );
    assert!(
        text.starts_with(&format!("aac-host {}", env!("CARGO_PKG_VERSION")))
            && text.contains("wasmtime: ")
            && text.contains("commit: "),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&manager_help.stdout).contains("--tls-cert"),
        "{}",
        String::from_utf8_lossy(&manager_help.stderr)
    );
}
