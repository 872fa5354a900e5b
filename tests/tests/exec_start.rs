//! How an exec in a real Docker sandbox reports that its program could not start, on both paths
//! (a fresh `docker exec` and a spare process): a bad cwd is `invalid-request`, a missing program
//! `spawn-failed`, each naming what was wrong; a program printing the wrapper's status words is
//! just output.

use std::sync::Arc;

use aac_host::sandbox::{ExecError, ExecSpec, Sandbox};
use futures::StreamExt;

async fn sandbox(workspace: &std::path::Path) -> Arc<dyn Sandbox> {
    aac_tests::open_sandbox(workspace, "test-exec-start").await
}

fn request(argv: &[&str], cwd: Option<&str>) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|arg| arg.to_string()).collect(),
        cwd: cwd.map(str::to_string),
        ..ExecSpec::default()
    }
}

/// Everything the process wrote, and its exit code.
async fn run(
    sandbox: &Arc<dyn Sandbox>,
    spec: ExecSpec,
) -> Result<(String, Option<i32>), ExecError> {
    let mut process = sandbox.exec(spec).await?;
    let mut said = String::new();
    while let Some(chunk) = process.output.next().await {
        said.push_str(&String::from_utf8_lossy(&chunk.unwrap().data));
    }
    let code = process.control.exit_info().await.unwrap().code;
    Ok((said, code))
}

/// The failures, each asked of a fresh sandbox (a fresh `docker exec`) and of a warmed one (a
/// spare process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cwd_is_invalid_request_and_a_missing_program_spawn_failed_on_both_exec_paths() {
    for warm in [false, true] {
        for case in ["cwd", "program", "not-executable"] {
            let workspace = tempfile::tempdir().unwrap();
            let sandbox = sandbox(workspace.path()).await;
            if warm {
                sandbox.warm_up().await.unwrap();
            }
            let outcome = match case {
                "cwd" => run(&sandbox, request(&["echo", "hi"], Some("/no/such/dir"))).await,
                "program" => run(&sandbox, request(&["no-such-program-aac"], None)).await,
                _ => run(&sandbox, request(&["/etc/passwd"], None)).await,
            };
            sandbox.remove().await.unwrap();
            let path = if warm { "spare" } else { "fresh" };
            match (case, outcome) {
                ("cwd", Err(ExecError::InvalidRequest(message))) => {
                    assert!(message.contains("\"/no/such/dir\""), "{path}: {message}")
                }
                ("program", Err(ExecError::SpawnFailed(message))) => {
                    assert!(
                        message.contains("\"no-such-program-aac\""),
                        "{path}: {message}"
                    )
                }
                ("not-executable", Err(ExecError::SpawnFailed(message))) => {
                    assert!(message.contains("\"/etc/passwd\""), "{path}: {message}")
                }
                (case, other) => panic!("{path} exec, {case}: {other:?}"),
            }
        }
    }
}

/// The status line is read before the program exists, so a program that prints it is not taken for
/// the wrapper; a good cwd is entered on both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_cannot_forge_the_wrappers_status_and_a_good_cwd_is_entered() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;
    let mut seen = Vec::new();
    for warm in [false, true] {
        if warm {
            sandbox.warm_up().await.unwrap();
        }
        let forged = run(
            &sandbox,
            request(
                &[
                    "sh",
                    "-c",
                    "echo aac-exec:cwd; echo aac-exec:program >&2; exit 3",
                ],
                None,
            ),
        )
        .await;
        let cwd = run(&sandbox, request(&["pwd"], Some("/tmp"))).await;
        seen.push((forged, cwd));
    }
    sandbox.remove().await.unwrap();
    for (forged, cwd) in seen {
        let (said, code) = forged.expect("the forged status is output, not an error");
        assert!(
            said.contains("aac-exec:cwd\n") && said.contains("aac-exec:program\n"),
            "{said:?}"
        );
        assert_eq!(code, Some(3));
        assert_eq!(cwd.unwrap(), ("/tmp\n".to_string(), Some(0)));
    }
}
