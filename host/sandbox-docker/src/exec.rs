//! Control of one `docker exec` process: signals to its whole tree and its exit status.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use bollard::Docker;
use bollard::exec::StartExecOptions;
use bollard::models::ExecConfig;
use tracing::warn;

use super::container::{OomCounter, container_running};
use super::exit_report::ReportedExit;
use super::spare::Spares;
use crate::deadline::{Call, bounded};
use aac_sandbox::{ExitInfo, ProcessControl, Signal};

/// Pid files live directly in /tmp (a tmpfs every sandbox has): no directory to create per exec.
pub(super) const PID_FILE_PREFIX: &str = "/tmp/.aac-exec-";

/// Runs one program through `start` (see `exec_start`: the pid file, the status line, the
/// program as the shell's child, the exit report), then exits with its code. Docker has no API to
/// signal an exec, so the pid file is how a kill finds the shell and, below it, the program.
/// Arguments: the pid file, the exit report's nonce, then `start`'s; `$0` is [`SHELL_NAME`], so
/// the shell's own errors do not show the host's pid-file path. Runs after
/// [`START_FUNCTION`](super::exec_start::START_FUNCTION).
pub(super) const EXEC_WRAPPER: &str = r#"start "$@"
exit "${s:-1}""#;

/// `$0` of the wrapper shells: what their error messages start with.
pub(super) const SHELL_NAME: &str = "sandbox";

/// `stop PIDFILE SIGNAL`: sends a signal to every descendant of a recorded pid — the process's
/// wrapper shell, which is never signalled itself: it stays to report how the program ended, and a
/// spare's shell goes on to the next command. Run by a sandbox's ready spare shell when there is
/// one (a line, no exec), else by an exec of its own ([`STOP_SCRIPT`]); a subshell, so its
/// variables and `exit` stay its own. The tree is stopped first, walk after walk until one finds
/// no process it has not stopped: a process forking while the tree is walked (a walk reads /proc
/// once per process, tens of ms for a big tree) would otherwise leave children the signal never
/// reaches, orphaned out of the tree before the next signal. Then, if the process is still the one
/// the pid file names (its wrapper removes the file when it ends, before a spare's shell can take
/// another command), the signal goes to every process at once, and a TERM's receivers go on to
/// handle it. A pid file naming the shell running `stop` (a pid reused) is left alone: the walk
/// would stop the walker. (`below` echoes a child before walking it: shell variables are global,
/// so the recursion overwrites `c`.)
pub(super) const STOP_FUNCTION: &str = r#"stop() (
  pid=$(cat "$1" 2>/dev/null) || exit 0
  [ "$pid" = "$$" ] && exit 0
  below() { for c in $(cat /proc/$1/task/*/children 2>/dev/null); do echo "$c"; below "$c"; done; }
  seen=" "; round=0
  while [ $round -lt 50 ]; do
    new=""
    for p in $(below "$pid"); do case "$seen" in *" $p "*) ;; *) new="$new $p" ;; esac; done
    [ -z "$new" ] && break
    kill -s STOP $new 2>/dev/null
    seen="$seen${new# } "
    round=$((round+1))
  done
  [ "$seen" = " " ] && exit 0
  if [ -f "$1" ]; then
    kill -s "$2" $seen 2>/dev/null
    [ "$2" = KILL ] || kill -s CONT $seen 2>/dev/null
  else
    kill -s CONT $seen 2>/dev/null
  fi
)
"#;

/// A kill's own exec: [`STOP_FUNCTION`] run with the exec's arguments (`$1` the pid file, `$2`
/// the signal).
const STOP_SCRIPT: &str = r#"stop "$@""#;

/// How long a kill waits for a spare on its way before it makes an exec of its own: the spare's
/// exec is already under way, and a second one beside it would only slow both.
const KILL_SPARE_WAIT: Duration = Duration::from_millis(500);

/// 128 + SIGKILL: how a process killed by the OOM killer exits.
const SIGKILL_EXIT: i32 = 137;

pub(super) struct DockerProcess {
    pub(super) docker: Docker,
    pub(super) container: String,
    pub(super) exec_id: String,
    pub(super) pid_file: String,
    pub(super) oom: OomCounter,
    /// The exit code the wrapper reported at the end of the output, if it did.
    pub(super) reported: ReportedExit,
    /// The sandbox's spare shells: a ready one runs a kill without an exec.
    pub(super) spares: Arc<Spares>,
}

impl DockerProcess {
    /// Whether the process ended because its container went away. Only an exit that looks like a
    /// kill is checked, a few times: Docker reports a killed container as stopped a moment late.
    async fn sandbox_failure(&self, code: Option<i32>) -> Option<String> {
        if !matches!(code, None | Some(SIGKILL_EXIT) | Some(-1)) {
            return None;
        }
        for _ in 0..5 {
            match container_running(&self.docker, &self.container).await {
                Ok(true) => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(false) => {
                    return Some(format!(
                        "container {} stopped while the process ran",
                        self.container
                    ));
                }
                Err(err) => return Some(format!("{err:#}")),
            }
        }
        None
    }
}

impl DockerProcess {
    /// The exit with `code`, told apart from a lost sandbox and an OOM kill.
    async fn exit_with(&self, code: Option<i32>) -> ExitInfo {
        let sandbox_error = self.sandbox_failure(code).await;
        // The OOM killer may have hit any process of the tree (a CLI's child, whose parent then
        // exits however it likes): asked after every exit but a clean one — after that one too
        // when asking is a file read.
        let oom_killed = sandbox_error.is_none()
            && (code != Some(0) || self.oom.is_cheap())
            && self.oom.new_kill().await.unwrap_or(false);
        ExitInfo {
            code,
            oom_killed,
            sandbox_error,
            ..ExitInfo::default()
        }
    }
}

#[async_trait]
impl ProcessControl for DockerProcess {
    async fn signal(&self, signal: Signal) -> Result<()> {
        if self.reported.code().is_some() {
            // Its wrapper reported the exit: nothing is left to signal (and a spare's shell may
            // already run the next process).
            return Ok(());
        }
        let name = match signal {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        };
        let stop = format!("stop '{}' {name}", self.pid_file);
        if self.spares.run_on_ready(&stop, KILL_SPARE_WAIT).await {
            return Ok(());
        }
        let config = ExecConfig {
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            cmd: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("{STOP_FUNCTION}{STOP_SCRIPT}"),
                SHELL_NAME.into(),
                self.pid_file.clone(),
                name.into(),
            ]),
            ..Default::default()
        };
        let target = format!("container {}", self.container);
        let exec = bounded(
            Call::CreateExec,
            &target,
            self.docker.create_exec(&self.container, config),
        )
        .await?;
        let options = StartExecOptions {
            detach: true,
            ..Default::default()
        };
        bounded(
            Call::StartExec,
            &target,
            self.docker.start_exec(&exec.id, Some(options)),
        )
        .await?;
        Ok(())
    }

    async fn exit_info(&self) -> Result<ExitInfo> {
        if let Some(code) = self.reported.code() {
            return Ok(self.exit_with(Some(code)).await);
        }
        // The output ends a moment before Docker records the exit code.
        for attempt in 0..50u64 {
            let inspect = bounded(
                Call::InspectExec,
                &format!("exec {} in container {}", self.exec_id, self.container),
                self.docker.inspect_exec(&self.exec_id),
            )
            .await
            .with_context(|| format!("could not inspect exec {}", self.exec_id))?;
            if inspect.running != Some(true) {
                return Ok(self
                    .exit_with(inspect.exit_code.map(|code| code as i32))
                    .await);
            }
            tokio::time::sleep(Duration::from_millis(2 * attempt.min(10) + 1)).await;
        }
        warn!(exec = %self.exec_id, "exec still running after its output ended");
        bail!(
            "exec {} still reports running after its output ended",
            self.exec_id
        )
    }
}
