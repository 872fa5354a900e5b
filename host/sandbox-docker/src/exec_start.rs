//! How an exec tells the host whether its program started. Both the wrapper of a fresh exec and a
//! spare process run [`START_FUNCTION`]: it enters the cwd and looks the program up, then writes
//! one status line to stdout — a bad cwd, a missing program, or "starting" — before it `exec`s the
//! program. That line is the first thing on the exec's stdout, written before the program exists, so
//! nothing the program prints can forge it; the host reads it and hands on only what follows.

use bollard::container::LogOutput;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::deadline::{Call, CallError, bounded};
use aac_sandbox::{ExecError, ExecSpec};

/// `start NONCE CWD PROGRAM ARGS…`: the status line, then the program as the shell's child, then
/// the exit report on stdout and on stderr (see `exit_report`). A program named with a `/` must be
/// an executable file; a bare name must be found by `command -v`. The child writes "starting"
/// and `exec`s the program: a fork the pids limit refuses leaves no status line (the host's
/// "ended before starting the program"), and a name the shell only knows as a builtin passes the
/// lookup and fails at `exec` with 127, as it would as a process of its own. The shell outlives a
/// TERM until its child has ended (the trap runs after the foreground command), so a kill's KILL
/// still finds the program below it. The shell's own stderr is /dev/null (the program's is kept on
/// fd 3 for it), so its job notices ("Killed") never mix with the program's output.
pub(super) const START_FUNCTION: &str = r#"start() {
  n=$1
  shift
  cd -- "$1" >/dev/null 2>&1 || { echo aac-exec:cwd; exit 2; }
  shift
  case $1 in */*) [ -f "$1" ] && [ -x "$1" ] ;; *) command -v -- "$1" >/dev/null 2>&1 ;; esac ||
    { echo aac-exec:program; exit 127; }
  trap : TERM
  exec 3>&2 2>/dev/null
  (echo aac-exec:ok && exec "$@" 2>&3 3>&-)
  s=$?
  printf '\036aac-exit:%s:%s\n' "$n" "$s"
  printf '\036aac-exit:%s:%s\n' "$n" "$s" >&3
  exit "$s"
}
"#;

type Output = BoxStream<'static, Result<LogOutput, bollard::errors::Error>>;

/// Waits for the exec's status line: the program's output stream (the line taken off) when it
/// started, else the error the WIT names (`invalid-request` for the cwd, `spawn-failed` for the
/// program).
pub(super) async fn started(
    container: &str,
    spec: &ExecSpec,
    default_cwd: &str,
    mut output: Output,
) -> Result<Output, ExecError> {
    let target = format!("container {container}");
    let first = bounded(Call::StartExec, &target, status_line(&mut output)).await;
    let (line, early) = match first {
        Ok(first) => first,
        Err(err @ CallError::TimedOut { .. }) => {
            return Err(ExecError::SandboxLost(err.to_string()));
        }
        Err(err) => {
            return Err(ExecError::SpawnFailed(format!(
                "container {container}: the exec's output broke before the program started: {err}"
            )));
        }
    };
    match line.as_deref() {
        Some("aac-exec:ok") => Ok(futures::stream::iter(early.into_iter().map(Ok))
            .chain(output)
            .boxed()),
        Some("aac-exec:cwd") => Err(ExecError::InvalidRequest(format!(
            "cwd {} is not a directory the sandbox's user can enter",
            shown(spec.cwd.as_deref().unwrap_or(default_cwd))
        ))),
        Some("aac-exec:program") => Err(ExecError::SpawnFailed(format!(
            "program {} is not found or not executable in the sandbox",
            shown(spec.argv.first().map(String::as_str).unwrap_or_default())
        ))),
        _ => Err(ExecError::SpawnFailed(format!(
            "container {container}: the sandbox's exec wrapper ended before starting the program (is the sandbox at its pids or memory limit?)"
        ))),
    }
}

/// The first stdout line (without its newline; `None` if the stream ended first) and every other
/// piece of output that came with it, in order, to hand on.
async fn status_line(
    output: &mut Output,
) -> Result<(Option<String>, Vec<LogOutput>), bollard::errors::Error> {
    let mut line = Vec::new();
    let mut early = Vec::new();
    while let Some(item) = output.next().await {
        match item? {
            LogOutput::StdOut { message } => {
                let Some(end) = message.iter().position(|&byte| byte == b'\n') else {
                    line.extend_from_slice(&message);
                    // The wrapper's line is a few bytes; more is not the wrapper.
                    if line.len() > 64 {
                        return Ok((None, early));
                    }
                    continue;
                };
                line.extend_from_slice(&message[..end]);
                let rest = message.slice(end + 1..);
                if !rest.is_empty() {
                    early.push(LogOutput::StdOut { message: rest });
                }
                return Ok((Some(String::from_utf8_lossy(&line).into_owned()), early));
            }
            other => early.push(other),
        }
    }
    Ok((None, early))
}

/// A plugin-given string in a message: quoted, control characters escaped, cut to a bound.
fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    let mut cut: String = text.chars().take(MAX_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}
