//! How a process's end reaches the host from a real Docker sandbox, on both exec paths (a fresh
//! `docker exec` and a spare process): its wrapper shell reports the exit code after the last byte
//! of each stream, so every byte and the right code arrive without waiting for Docker's exit event;
//! a child left behind holding the output does not keep the process open; output that looks like a
//! report is output; a kill still reaches a program that ignores TERM, below its wrapper.

use std::sync::Arc;
use std::time::Duration;

use aac_host::sandbox::{RawProcess, Sandbox, Signal};
use aac_tests::finish_raw as finish;
use futures::StreamExt;

async fn sandbox(workspace: &std::path::Path, warm: bool) -> Arc<dyn Sandbox> {
    let sandbox = aac_tests::open_sandbox(workspace, "test-exec-exit").await;
    if warm {
        sandbox.warm_up().await.unwrap();
    }
    sandbox
}

async fn start(sandbox: &Arc<dyn Sandbox>, script: &str) -> RawProcess {
    let spec = aac_host::sandbox::ExecSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    };
    sandbox.exec(spec).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_and_the_exit_code_arrive_on_both_exec_paths() {
    for warm in [false, true] {
        let path = if warm { "spare" } else { "fresh" };
        let workspace = tempfile::tempdir().unwrap();
        let sandbox = sandbox(workspace.path(), warm).await;

        // Output without a final newline, on both streams, then a code of its own.
        let process = start(&sandbox, "printf out; printf err >&2; exit 7").await;
        assert_eq!(
            finish(process).await,
            ("out".into(), "err".into(), Some(7)),
            "{path}"
        );

        // Killed by a signal: the shell's 128 + 9, as Docker would say.
        let process = start(&sandbox, "echo before; kill -9 $$").await;
        assert_eq!(
            finish(process).await,
            ("before\n".into(), String::new(), Some(137)),
            "{path}"
        );

        // A child left behind with the output open: the process ended when its program did.
        let process = start(&sandbox, "sleep 60 & echo started").await;
        assert_eq!(
            finish(process).await,
            ("started\n".into(), String::new(), Some(0)),
            "{path}"
        );

        // A line shaped like a report, with another nonce: output, and the process goes on.
        let forged = "\u{1e}aac-exit:00000000000000000000000000000000:0";
        let line = r"printf '\036aac-exit:00000000000000000000000000000000:0\n'";
        let script = format!("{line}; {line} >&2; echo still here; exit 3");
        let process = start(&sandbox, &script).await;
        assert_eq!(
            finish(process).await,
            (
                format!("{forged}\nstill here\n"),
                format!("{forged}\n"),
                Some(3)
            ),
            "{path}"
        );

        // Many small writes on both streams: nothing lost, nothing after the end.
        let script = "i=0; while [ $i -lt 2000 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done";
        let (out, err, code) = finish(start(&sandbox, script).await).await;
        assert_eq!(code, Some(0), "{path}");
        assert_eq!(out.lines().count(), 2000, "{path}");
        assert_eq!(err.lines().count(), 2000, "{path}");
        assert!(
            out.ends_with("o1999\n") && err.ends_with("e1999\n"),
            "{path}"
        );

        sandbox.remove().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_ignores_term_is_still_killed_below_its_wrapper() {
    for warm in [false, true] {
        let path = if warm { "spare" } else { "fresh" };
        let workspace = tempfile::tempdir().unwrap();
        let sandbox = sandbox(workspace.path(), warm).await;
        let mut process = start(&sandbox, "trap '' TERM; echo ready; sleep 60").await;
        let first = process.output.next().await.unwrap().unwrap();
        assert_eq!(&first.data[..], b"ready\n", "{path}");

        process.control.signal(Signal::Term).await.unwrap();
        let still_running = tokio::time::timeout(Duration::from_secs(1), process.output.next());
        assert!(
            still_running.await.is_err(),
            "{path}: the output ended on a TERM the program ignores"
        );

        process.control.signal(Signal::Kill).await.unwrap();
        let (out, _, code) = finish(process).await;
        assert_eq!((out.as_str(), code), ("", Some(137)), "{path}");
        sandbox.remove().await.unwrap();
    }
}
