//! The dead-man's switch: every container runs a watchdog exec whose stdin this host process holds
//! open. When the process vanishes (even `kill -9`), the kernel closes its connection to the
//! engine, the engine closes the watchdog's stdin, and the watchdog kills every process of the
//! container — the init's child included, so the container stops. A sandbox never outlives its
//! host; the next aac-host on the machine then removes the stopped container (see `reaper`).

use std::pin::Pin;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures::StreamExt;

use super::deadline::{Call, bounded};

/// Waits for EOF on stdin, then SIGKILLs every process it may signal (all but PID 1 and itself).
const WATCHDOG: &str = "cat >/dev/null 2>&1; kill -9 -1";

/// The held end of a container's watchdog; dropping it (or the process ending) fires it.
pub(super) struct DeadMan {
    _stdin: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// Starts the watchdog in `container`.
pub(super) async fn arm(docker: &Docker, container: &str) -> Result<DeadMan> {
    let config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), WATCHDOG.into()]),
        ..Default::default()
    };
    let target = format!("container {container}");
    let exec = bounded(
        Call::CreateExec,
        &target,
        docker.create_exec(container, config),
    )
    .await
    .with_context(|| format!("could not create the watchdog of container {container}"))?;
    let options = StartExecOptions {
        detach: false,
        tty: false,
        output_capacity: None,
    };
    let started = bounded(
        Call::StartExec,
        &target,
        docker.start_exec(&exec.id, Some(options)),
    )
    .await
    .with_context(|| format!("could not start the watchdog of container {container}"))?;
    let StartExecResults::Attached { mut output, input } = started else {
        bail!("docker started the watchdog of container {container} detached");
    };
    // Keep reading so the connection stays healthy; the stream ends with the container.
    tokio::spawn(async move { while output.next().await.is_some() {} });
    Ok(DeadMan { _stdin: input })
}
