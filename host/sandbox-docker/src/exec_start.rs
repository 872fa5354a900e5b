//! How an exec tells the host whether its program started. Both the wrapper of a fresh exec and a
//! spare process run [`START_FUNCTION`] for each program: it enters the cwd and looks the program
//! up, then writes one status line to stdout — a bad cwd, a missing program, or "starting" — before
//! it `exec`s the program. That line is the first thing on the exec's stdout, written before the program exists, so
//! nothing the program prints can forge it; the host reads it and hands on only what follows.

use bollard::container::LogOutput;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::deadline::{Call, CallError};
use aac_sandbox::{ExecError, ExecSpec, OutputChunk, OutputStream};

/// `start PIDFILE NONCE CWD [K=V…] -- PROGRAM ARGS…`, run by the exec's shell: it records its
/// pid in PIDFILE (how a kill finds the process: the shell's descendants), then, in a child, enters
/// CWD, exports the variables and looks the program up, writes one status line — a bad cwd, a
/// missing program, or "starting" — and `exec`s the program. Once the child has exited, the pid
/// file goes and the exit report follows on stdout and on stderr (see `exit_report`); `$s` holds
/// the code. A program named with a `/` must be an executable file; a bare name must be found by
/// `command -v`. A fork the pids limit refuses leaves no status line (the host's "ended before
/// starting the program"), and a name the shell only knows as a builtin passes the lookup and
/// fails at `exec` with 127, as it would as a process of its own. The shell is never signalled by
/// a kill (only its descendants are), so it is there to report how the program ended. Its own
/// stderr is /dev/null (the exec's is fd 3, the program's stderr), so its notices never mix with
/// the program's output; the child's variables and cwd never reach the shell.
pub(super) const START_FUNCTION: &str = r#"start() {
  echo $$ > "$1" || return 1
  f=$1 n=$2
  shift 2
  (cd -- "$1" >/dev/null 2>&1 || { echo aac-exec:cwd; exit 2; }
   shift
   while [ "$1" != -- ]; do export "$1" || exit 1; shift; done
   shift
   case $1 in */*) [ -f "$1" ] && [ -x "$1" ] ;; *) command -v -- "$1" >/dev/null 2>&1 ;; esac ||
     { echo aac-exec:program; exit 127; }
   echo aac-exec:ok && exec "$@" 2>&3 3>&-)
  s=$?
  rm -f "$f"
  printf '\036aac-exit:%s:%s\n' "$n" "$s"
  printf '\036aac-exit:%s:%s\n' "$n" "$s" >&3
}
trap : TERM
exec 3>&2 2>/dev/null
"#;

/// An exec's output as the host reads it: Docker's frames as [`OutputChunk`]s.
pub(super) type Chunks = BoxStream<'static, anyhow::Result<OutputChunk>>;

/// `output` as [`Chunks`] (Docker's stdin echo and console frames are not output).
pub(super) fn chunks(
    output: BoxStream<'static, Result<LogOutput, bollard::errors::Error>>,
) -> Chunks {
    output
        .filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(OutputChunk {
                    stream: OutputStream::Stdout,
                    data: message,
                })),
                Ok(LogOutput::StdErr { message }) => Some(Ok(OutputChunk {
                    stream: OutputStream::Stderr,
                    data: message,
                })),
                Ok(_) => None,
                Err(err) => Some(Err(
                    anyhow::anyhow!(err).context("the exec's output stream broke")
                )),
            }
        })
        .boxed()
}

/// The `start` arguments after the pid file and nonce for `spec`: the cwd, the variables (none
/// when Docker sets them, as for a fresh exec), `--`, the argv.
pub(super) fn start_args(spec: &ExecSpec, default_cwd: &str, with_env: bool) -> Vec<String> {
    let mut args = vec![spec.cwd.as_deref().unwrap_or(default_cwd).to_string()];
    if with_env {
        args.extend(spec.env.iter().map(|(key, value)| format!("{key}={value}")));
    }
    args.push("--".into());
    args.extend(spec.argv.iter().cloned());
    args
}

/// Why a program did not start.
pub(super) enum StartFailure {
    /// The sandbox refused it: the error the WIT names (`invalid-request` for the cwd,
    /// `spawn-failed` for the program), or the exec lost.
    Refused(ExecError),
    /// The exec's shell wrote no status line: it ended first (the sandbox at its pids or memory
    /// limit, or something in it ended the shell).
    NoStatus,
}

impl StartFailure {
    pub(super) fn into_exec_error(self, container: &str) -> ExecError {
        match self {
            Self::Refused(err) => err,
            Self::NoStatus => ExecError::SpawnFailed(format!(
                "container {container}: the sandbox's exec wrapper ended before starting the program (is the sandbox at its pids or memory limit?)"
            )),
        }
    }
}

/// Waits for the exec's status line: the program's output stream (the line taken off) when it
/// started, else why not.
pub(super) async fn started(
    container: &str,
    spec: &ExecSpec,
    default_cwd: &str,
    mut output: Chunks,
) -> Result<Chunks, StartFailure> {
    let call = Call::StartExec;
    let first = tokio::time::timeout(call.deadline(), status_line(&mut output)).await;
    let (line, early) = match first {
        Ok(Ok(first)) => first,
        Err(_) => {
            let timed_out = CallError::TimedOut {
                call: call.name(),
                target: format!("container {container}"),
                after: call.deadline(),
            };
            return Err(StartFailure::Refused(ExecError::SandboxLost(
                timed_out.to_string(),
            )));
        }
        Ok(Err(err)) => {
            return Err(StartFailure::Refused(ExecError::SpawnFailed(format!(
                "container {container}: the exec's output broke before the program started: {err:#}"
            ))));
        }
    };
    match line.as_deref() {
        Some("aac-exec:ok") => Ok(futures::stream::iter(early.into_iter().map(Ok))
            .chain(output)
            .boxed()),
        Some("aac-exec:cwd") => Err(StartFailure::Refused(ExecError::InvalidRequest(format!(
            "cwd {} is not a directory the sandbox's user can enter",
            shown(spec.cwd.as_deref().unwrap_or(default_cwd))
        )))),
        Some("aac-exec:program") => Err(StartFailure::Refused(ExecError::SpawnFailed(format!(
            "program {} is not found or not executable in the sandbox",
            shown(spec.argv.first().map(String::as_str).unwrap_or_default())
        )))),
        _ => Err(StartFailure::NoStatus),
    }
}

/// The first stdout line (without its newline; `None` if the stream ended first) and every other
/// piece of output that came with it, in order, to hand on.
async fn status_line(output: &mut Chunks) -> anyhow::Result<(Option<String>, Vec<OutputChunk>)> {
    let mut line = Vec::new();
    let mut early = Vec::new();
    while let Some(item) = output.next().await {
        match item? {
            OutputChunk {
                stream: OutputStream::Stdout,
                data: message,
            } => {
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
                    early.push(OutputChunk {
                        stream: OutputStream::Stdout,
                        data: rest,
                    });
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
