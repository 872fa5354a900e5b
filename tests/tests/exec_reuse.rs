//! A spare's shell runs a session's processes one after another: once a process whose stdin was
//! not piped has ended and nothing else holds its output, the same `docker exec` takes the next
//! command. Each process still gets its own variables, cwd and stdin; a child left behind keeps
//! its exec to itself; a late kill of an ended process never reaches the next one. Real dockerd.

use std::sync::Arc;

use aac_host::sandbox::{ExecSpec, Sandbox, Signal};
use aac_tests::finish_raw as finish;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

async fn sandbox(workspace: &std::path::Path) -> Arc<dyn Sandbox> {
    let sandbox = aac_tests::open_sandbox(workspace, "test-exec-reuse").await;
    sandbox.warm_up().await.unwrap();
    sandbox
}

fn sh(script: &str) -> ExecSpec {
    ExecSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        ..ExecSpec::default()
    }
}

async fn run(sandbox: &Arc<dyn Sandbox>, spec: ExecSpec) -> (String, String, Option<i32>) {
    finish(sandbox.exec(spec).await.unwrap()).await
}

/// The pipe a process's stdout is (`pipe:[inode]`): the same for two processes on one exec.
const STDOUT_PIPE: &str = "ls -l /proc/$$/fd/1 | sed 's/.* -> //'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_one_after_another_share_one_exec_and_nothing_else() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;

    let mut pipes = Vec::new();
    for i in 0..5 {
        // Variables and a cwd of their own, which the next process must not see.
        let spec = ExecSpec {
            env: vec![(format!("ONLY_{i}"), "set".into())],
            cwd: Some(if i % 2 == 0 { "/tmp" } else { "/" }.into()),
            ..sh(&format!(
                "{STDOUT_PIPE}; echo \"cwd=$PWD\"; env | grep '^ONLY_' | sort; echo err{i} >&2; exit {i}"
            ))
        };
        let (out, err, code) = run(&sandbox, spec).await;
        let mut lines = out.lines();
        pipes.push(lines.next().unwrap().to_string());
        let cwd = if i % 2 == 0 { "/tmp" } else { "/" };
        assert_eq!(
            lines.collect::<Vec<_>>(),
            vec![format!("cwd={cwd}"), format!("ONLY_{i}=set")],
            "process {i}: {out:?}"
        );
        assert_eq!(err, format!("err{i}\n"));
        assert_eq!(code, Some(i));
    }
    assert!(pipes[0].starts_with("pipe:["), "{pipes:?}");
    assert!(
        pipes.iter().all(|pipe| pipe == &pipes[0]),
        "processes one after another ran on one exec: {pipes:?}"
    );
    sandbox.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_left_behind_keeps_its_exec_and_its_output_out_of_the_next_process() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;

    let (out, _, code) = run(
        &sandbox,
        sh(&format!(
            "{STDOUT_PIPE}; (sleep 0.5; echo LEFT BEHIND; echo LEFT BEHIND >&2) & echo first"
        )),
    )
    .await;
    assert_eq!(code, Some(0));
    let first_pipe = out.lines().next().unwrap().to_string();
    assert!(out.ends_with("first\n"), "{out:?}");

    // Started at once, it outlives the child's writes.
    let (out, err, code) = run(
        &sandbox,
        sh(&format!("{STDOUT_PIPE}; sleep 1; echo second")),
    )
    .await;
    assert_eq!(code, Some(0));
    assert!(
        !out.contains("LEFT") && !err.contains("LEFT"),
        "{out:?} {err:?}"
    );
    assert_ne!(
        out.lines().next().unwrap(),
        first_pipe,
        "the exec a child still holds took the next command"
    );
    assert!(out.ends_with("second\n"), "{out:?}");
    sandbox.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_program_leaves_on_its_stdin_is_never_run_as_a_command() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;
    let marker = workspace.path().join("ran");

    // The program reads one line; the rest of what it was sent is left in the pipe.
    let spec = ExecSpec {
        stdin_piped: true,
        ..sh("read -r line; echo \"got $line\"")
    };
    let mut process = sandbox.exec(spec).await.unwrap();
    let mut stdin = process.stdin.take().unwrap();
    stdin
        .write_all(b"one\ntouch /workspace/ran\necho INJECTED\n")
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let (out, _, code) = finish(process).await;
    assert_eq!((out.as_str(), code), ("got one\n", Some(0)));
    drop(stdin);

    for _ in 0..3 {
        let (out, _, code) = run(&sandbox, sh("echo next")).await;
        assert_eq!((out.as_str(), code), ("next\n", Some(0)));
    }
    assert!(!marker.exists(), "a line left on the program's stdin ran");
    sandbox.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_kill_of_an_ended_process_never_reaches_the_next_one() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;

    let mut first = sandbox.exec(sh("echo done")).await.unwrap();
    while first.output.next().await.is_some() {}
    let first_control = first.control.clone();
    assert_eq!(first_control.exit_info().await.unwrap().code, Some(0));

    let second = sandbox.exec(sh("sleep 1; echo still here")).await.unwrap();
    // The first process's handle is still held: its kill must find nothing to signal.
    first_control.signal(Signal::Kill).await.unwrap();
    first_control.signal(Signal::Term).await.unwrap();
    let (out, _, code) = finish(second).await;
    assert_eq!((out.as_str(), code), ("still here\n", Some(0)));
    sandbox.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_hands_its_shell_on_and_the_next_one_runs() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;

    for signal in [Signal::Term, Signal::Kill] {
        let mut process = sandbox.exec(sh("echo up; sleep 60")).await.unwrap();
        let first = process.output.next().await.unwrap().unwrap();
        assert_eq!(first.data, "up\n");
        process.control.signal(signal).await.unwrap();
        let (_, _, code) = finish(process).await;
        let expected = match signal {
            Signal::Term => 143,
            Signal::Kill => 137,
        };
        assert_eq!(code, Some(expected), "{signal:?}");
        let (out, _, code) = run(&sandbox, sh("echo after")).await;
        assert_eq!((out.as_str(), code), ("after\n", Some(0)), "{signal:?}");
    }
    sandbox.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_runs_on_the_ready_spare_without_an_exec_of_its_own() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;

    // A tree of three processes, the program's shell among them.
    let tree = "echo up; sleep 60 & sleep 60 & wait";
    for signal in [Signal::Term, Signal::Kill] {
        let mut process = sandbox.exec(sh(tree)).await.unwrap();
        let first = process.output.next().await.unwrap().unwrap();
        assert_eq!(first.data, "up\n");
        // The process holds the sandbox's shell; a spare is ready beside it.
        sandbox.warm_up().await.unwrap();
        let since = std::time::SystemTime::now();
        process.control.signal(signal).await.unwrap();
        let (_, _, code) = finish(process).await;
        let until = std::time::SystemTime::now();
        let expected = match signal {
            Signal::Term => 143,
            Signal::Kill => 137,
        };
        assert_eq!(code, Some(expected), "{signal:?}");
        assert_eq!(
            aac_tests::exec_creates(sandbox.id(), since, until).await,
            0,
            "{signal:?}: the kill made an exec"
        );
        // Signalled together, the children may end a moment after their parent.
        let gone = "for i in $(seq 50); do ps -o stat,args | grep -q '^[^Z]* sleep 60' || exit 0; sleep 0.1; done; ps -o pid,stat,args; exit 1";
        let (out, _, code) = run(&sandbox, sh(gone)).await;
        assert_eq!(code, Some(0), "{signal:?}: the tree is still there: {out}");
    }
    sandbox.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_still_lands_when_something_in_the_sandbox_stopped_the_ready_spare() {
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandbox(workspace.path()).await;

    // The program says which shell runs it ($PPID); every other spare shell is the ready one.
    let mut process = sandbox.exec(sh("echo $PPID; sleep 60")).await.unwrap();
    let first = process.output.next().await.unwrap().unwrap();
    let runs_it = String::from_utf8_lossy(&first.data).trim().to_string();
    sandbox.warm_up().await.unwrap();
    // As a process of the sandbox would: stop every other spare shell, saying which. (The list
    // also names the `grep` that made it, gone by then: its kill fails and is not counted.)
    let stop_others = format!(
        "for p in $(grep -l aac-ready /proc/[0-9]*/cmdline | cut -d/ -f3); do \
         [ \"$p\" = {runs_it} ] || [ \"$p\" = $$ ] || {{ kill -STOP \"$p\" 2>/dev/null && echo \"$p\"; }}; \
         done; true"
    );
    let stopped = std::process::Command::new("docker")
        .args(["exec", sandbox.id(), "sh", "-c", &stop_others])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(
        !String::from_utf8_lossy(&stopped.stdout).trim().is_empty(),
        "no ready spare was stopped: {stopped:?}"
    );

    process.control.signal(Signal::Term).await.unwrap();
    let (_, _, code) = tokio::time::timeout(std::time::Duration::from_secs(30), finish(process))
        .await
        .expect("the kill never reached the process");
    assert_eq!(code, Some(143));
    let (out, _, code) = run(&sandbox, sh("echo after")).await;
    assert_eq!((out.as_str(), code), ("after\n", Some(0)));
    sandbox.remove().await.unwrap();
}
