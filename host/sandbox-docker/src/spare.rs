//! Spare processes: a `docker exec` started ahead of time, a shell that runs the command lines it
//! is sent, one at a time. A session's next process then starts with one pipe write and a fork
//! instead of a runc exec (~70 ms of the engine's CPU on this engine).
//!
//! After a process whose stdin was not piped, the shell takes the next command once nothing else
//! holds its output (no child the program left behind): it says so with one line on each stream,
//! and the exec is the sandbox's spare again. So a session's processes one after another cost the
//! engine one exec, not one each. A replacement is started only for a process still running
//! after [`REPLACE_AFTER`] (another process may be started beside it), or when the shell does not
//! come back. A warm pool prepares one spare in every container it hands out.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use super::deadline::{Call, CallError, bounded};
use super::exec::{SHELL_NAME, STOP_FUNCTION};
use super::exec_start::{Chunks, START_FUNCTION, chunks, start_args};
use super::exit_report::{self, AfterExit, index};
use aac_sandbox::{ExecError, ExecSpec, OutputStream};

/// How long an exec waits for a spare being started (or coming back) before it makes its own.
const SPARE_WAIT: Duration = Duration::from_secs(2);

/// How long a process runs on a spare before a replacement is started beside it: most of an
/// agent's commands end sooner and hand their shell back.
const REPLACE_AFTER: Duration = Duration::from_millis(200);

/// How long a shell has to say it takes the next command once its process has ended.
const COMEBACK_WAIT: Duration = Duration::from_secs(2);

/// How long a ready shell has to say it ran a command sent by [`Spares::run_on_ready`].
const DONE_WAIT: Duration = Duration::from_secs(1);

/// Runs each line it reads (`start …` and what follows it, see [`command_line`]; or a kill's
/// `stop …`) after [`START_FUNCTION`] and [`STOP_FUNCTION`]. `$nl` lets quoted arguments carry
/// newlines while a command stays one line.
/// `again` tells the host the shell takes the next command — only when its stdout and stderr pipes
/// are held by nobody but itself (`$o`, `$e`: their identities; a child the program left behind
/// still writing would otherwise write into the next process's output); else the shell ends.
const SPARE_SCRIPT: &str = "nl='\n'
o=$(ls -l /proc/$$/fd/1) && o=${o##* } && e=$(ls -l /proc/$$/fd/3) && e=${e##* } || o=
again() {
  [ -n \"$o\" ] && [ \"$(exec 3>&-; ls -l /proc/[0-9]*/fd | grep -c -F -e \"$o\" -e \"$e\")\" = 2 ] || exit 0
  printf '\\036aac-ready:%s\\n' \"$1\"
  printf '\\036aac-ready:%s\\n' \"$1\" >&3
}
while IFS= read -r line; do eval \"$line\"; done";

/// A started exec waiting for its command.
pub(super) struct SpareExec {
    pub(super) exec_id: String,
    pub(super) output: Chunks,
    pub(super) input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// Starts a spare process in `container`.
pub(super) async fn start(docker: &Docker, container: &str) -> Result<SpareExec, ExecError> {
    let config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        cmd: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("{START_FUNCTION}{STOP_FUNCTION}{SPARE_SCRIPT}"),
            SHELL_NAME.into(),
        ]),
        ..Default::default()
    };
    let failed = |err: CallError| {
        ExecError::SpawnFailed(format!("container {container}: spare process: {err}"))
    };
    let target = format!("container {container}");
    let exec = bounded(
        Call::CreateExec,
        &target,
        docker.create_exec(container, config),
    )
    .await
    .map_err(failed)?;
    let options = StartExecOptions {
        detach: false,
        tty: false,
        output_capacity: None,
    };
    match bounded(
        Call::StartExec,
        &target,
        docker.start_exec(&exec.id, Some(options)),
    )
    .await
    .map_err(failed)?
    {
        StartExecResults::Attached { output, input } => Ok(SpareExec {
            exec_id: exec.id,
            output: chunks(output),
            input,
        }),
        StartExecResults::Detached => Err(ExecError::SpawnFailed(
            "docker started the spare process detached".into(),
        )),
    }
}

/// The line a spare's shell runs for `spec` (one line, newline-terminated): `start` with the
/// process's pid file and the exit report's `nonce`, then — stdin not piped — `again`, or the
/// shell's end (the program had its stdin: what is left there is not the next command).
pub(super) fn command_line(
    spec: &ExecSpec,
    default_cwd: &str,
    pid_file: &str,
    nonce: &str,
) -> String {
    let mut line = String::from("start");
    let words = [pid_file.to_string(), nonce.to_string()]
        .into_iter()
        .chain(start_args(spec, default_cwd, true));
    for word in words {
        line.push(' ');
        line.push_str(&quote(&word));
    }
    if spec.stdin_piped {
        line.push_str("; exit");
    } else {
        line.push_str(&format!(" </dev/null && again {} || exit", quote(nonce)));
    }
    line.push('\n');
    line
}

/// `arg` as one shell word inside `eval`: single-quoted, with `'` and newlines spliced in.
fn quote(arg: &str) -> String {
    format!(
        "'{}'",
        arg.replace('\'', r"'\''").replace('\n', r#"'"$nl"'"#)
    )
}

/// Whether `output` says, with exactly the done line of `nonce` on stdout and nothing else, that
/// the shell ran what [`Spares::run_on_ready`] sent it.
async fn says_done(output: &mut Chunks, nonce: &str) -> bool {
    let expected = format!("\u{1e}aac-done:{nonce}\n");
    let mut seen = BytesMut::new();
    while seen.len() < expected.len() {
        let Some(Ok(chunk)) = output.next().await else {
            return false;
        };
        seen.extend_from_slice(&chunk.data);
        if chunk.stream != OutputStream::Stdout || !expected.as_bytes().starts_with(&seen) {
            return false;
        }
    }
    true
}

/// What a shell that takes the next command writes on each stream after its process's report.
fn ready_line(nonce: &str) -> String {
    format!("\u{1e}aac-ready:{nonce}\n")
}

/// `output` once both of its streams have shown exactly the ready line after the report (`after`:
/// what already came), ready for the next command; `None` for anything else — other bytes, the
/// stream's end.
async fn comes_back(mut output: Chunks, after: [Bytes; 2], nonce: &str) -> Option<Chunks> {
    let expected = ready_line(nonce);
    let expected = expected.as_bytes();
    let mut seen = after.map(|bytes| BytesMut::from(&bytes[..]));
    loop {
        if !seen.iter().all(|s| expected.starts_with(&s[..])) {
            return None;
        }
        if seen.iter().all(|s| &s[..] == expected) {
            return Some(output);
        }
        let chunk = output.next().await?.ok()?;
        seen[index(chunk.stream)].extend_from_slice(&chunk.data);
    }
}

/// A sandbox's spare: the one ready, and how many are on their way (being started, or coming back
/// from a process that ended).
pub(super) struct Spares {
    docker: Docker,
    container: String,
    state: Mutex<SpareState>,
    /// Told whenever one arrives (or does not, after all).
    arrived: Notify,
    /// One `docker exec` of this sandbox being created and started at a time (spares and fresh
    /// execs): each is ~70 ms of the engine's CPU, so a session starting processes in a burst
    /// makes the engine do them one after another, not all at once beside every other session's
    /// work; another session's exec never queues behind them.
    starting: Semaphore,
}

#[derive(Default)]
struct SpareState {
    ready: Option<SpareExec>,
    coming: usize,
    /// The sandbox is being removed: no more spares.
    closed: bool,
}

impl Spares {
    pub(super) fn new(docker: Docker, container: String) -> Arc<Self> {
        Arc::new(Self {
            docker,
            container,
            state: Mutex::default(),
            arrived: Notify::new(),
            starting: Semaphore::new(1),
        })
    }

    /// Waits for this sandbox's turn to create and start a `docker exec` (see `starting`).
    pub(super) async fn exec_turn(&self) -> Option<SemaphorePermit<'_>> {
        // Never closed: an error would only mean going ahead without the turn.
        self.starting.acquire().await.ok()
    }

    /// Starts a spare in this sandbox's turn.
    async fn start_one(&self) -> Result<SpareExec, ExecError> {
        let _turn = self.exec_turn().await;
        start(&self.docker, &self.container).await
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SpareState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a spare in the background, unless one is ready or on its way.
    pub(super) fn prepare(self: &Arc<Self>) {
        {
            let mut state = self.state();
            if state.ready.is_some() || state.coming > 0 || state.closed {
                return;
            }
            state.coming += 1;
        }
        let spares = self.clone();
        tokio::spawn(async move {
            let started = spares.start_one().await;
            if let Err(err) = &started {
                tracing::debug!(error = %err, "no spare process");
            }
            spares.arrive(started.ok());
        });
    }

    /// No more spares: the sandbox is being removed (the ready one's shell ends with its stdin).
    pub(super) fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.ready = None;
    }

    /// One on its way has arrived (`None`: it did not). A second ready one is not kept: its shell
    /// ends when its stdin closes.
    fn arrive(&self, spare: Option<SpareExec>) {
        {
            let mut state = self.state();
            state.coming -= 1;
            if state.ready.is_none() && !state.closed {
                state.ready = spare;
            }
        }
        self.arrived.notify_waiters();
    }

    /// The ready spare, waiting for one on its way if there is none yet (it is further along than
    /// a fresh exec would be). Waits at most [`SPARE_WAIT`]; `None` means a fresh exec.
    pub(super) async fn take(&self) -> Option<SpareExec> {
        self.take_within(SPARE_WAIT, false).await
    }

    /// The ready spare, after waiting at most `wait` for one on its way; `lend`: it comes back
    /// through [`arrive`](Self::arrive), counted as on its way meanwhile, so nobody else gives up
    /// on it.
    async fn take_within(&self, wait: Duration, lend: bool) -> Option<SpareExec> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let mut state = self.state();
                if let Some(spare) = state.ready.take() {
                    state.coming += usize::from(lend);
                    return Some(spare);
                }
                if state.coming == 0 {
                    return None;
                }
            }
            tokio::time::timeout_at(deadline, arrived).await.ok()?;
        }
    }

    /// Has the ready spare's shell run `command` (a kill's `stop`; its output is dropped), waiting
    /// at most `wait` for one on its way; true once the shell has said it ran it. False when there
    /// is no spare, or its shell did not say so in [`DONE_WAIT`] (gone, or stopped by something in
    /// the sandbox: that shell is given up), and the caller makes an exec.
    pub(super) async fn run_on_ready(self: &Arc<Self>, command: &str, wait: Duration) -> bool {
        let Some(mut spare) = self.take_within(wait, true).await else {
            return false;
        };
        let nonce = exit_report::nonce();
        let line = format!(
            "{command} >/dev/null 3>&-; printf '\\036aac-done:%s\\n' {}\n",
            quote(&nonce)
        );
        let sent = spare.input.write_all(line.as_bytes()).await.is_ok()
            && spare.input.flush().await.is_ok();
        let done = sent
            && tokio::time::timeout(DONE_WAIT, says_done(&mut spare.output, &nonce))
                .await
                .unwrap_or(false);
        if done {
            self.arrive(Some(spare));
        } else {
            tracing::debug!(exec = %spare.exec_id, "the spare's shell did not run a command it was sent");
            self.arrive(None);
            self.prepare();
        }
        done
    }

    /// A spare ready now: the one on its way, or one started here.
    pub(super) async fn warm_up(&self) -> Result<(), ExecError> {
        if let Some(spare) = self.take_within(SPARE_WAIT, true).await {
            self.arrive(Some(spare));
            return Ok(());
        }
        let spare = self.start_one().await?;
        let mut state = self.state();
        if state.ready.is_none() {
            state.ready = Some(spare);
        }
        Ok(())
    }

    /// For a process whose shell may come back: a replacement only if it is still running after
    /// [`REPLACE_AFTER`] (`ended`: its output is complete).
    pub(super) fn prepare_unless_ended(self: &Arc<Self>, ended: Arc<AtomicBool>) {
        let spares = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REPLACE_AFTER).await;
            if !ended.load(Ordering::SeqCst) {
                spares.prepare();
            }
        });
    }

    /// What takes a process's exec once its output is complete: the shell back as the spare when
    /// it says it takes the next command, else a replacement started.
    pub(super) fn comeback(
        self: &Arc<Self>,
        exec_id: String,
        input: Pin<Box<dyn AsyncWrite + Send>>,
        nonce: String,
        ended: Arc<AtomicBool>,
    ) -> AfterExit {
        let spares = self.clone();
        Box::new(move |rest, after| {
            ended.store(true, Ordering::SeqCst);
            spares.state().coming += 1;
            tokio::spawn(async move {
                let back = tokio::time::timeout(COMEBACK_WAIT, comes_back(rest, after, &nonce))
                    .await
                    .ok()
                    .flatten();
                let lost = back.is_none();
                if lost {
                    tracing::debug!(exec = %exec_id, "the process's shell did not come back");
                }
                spares.arrive(back.map(|output| SpareExec {
                    exec_id,
                    output,
                    input,
                }));
                if lost {
                    spares.prepare();
                }
            });
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aac_sandbox::OutputChunk;

    #[test]
    fn the_command_line_is_one_line_whatever_the_arguments() {
        let spec = ExecSpec {
            argv: vec!["sh".into(), "-c".into(), "echo 'a'\necho \"$HOME\"".into()],
            env: vec![("K".into(), "it's".into())],
            cwd: Some("/work space".into()),
            ..ExecSpec::default()
        };
        let line = command_line(&spec, "/workspace", "/tmp/p", "n0");
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with('\n'));
        assert_eq!(
            line.trim_end(),
            r#"start '/tmp/p' 'n0' '/work space' 'K=it'\''s' '--' 'sh' '-c' 'echo '\''a'\'''"$nl"'echo "$HOME"' </dev/null && again 'n0' || exit"#
        );
        let piped = ExecSpec {
            stdin_piped: true,
            ..spec
        };
        assert!(
            command_line(&piped, "/workspace", "/tmp/p", "n0").ends_with("; exit\n"),
            "a program given the shell's stdin is its last"
        );
    }

    fn stream(chunks: Vec<(OutputStream, &str)>) -> Chunks {
        let chunks: Vec<_> = chunks
            .into_iter()
            .map(|(stream, data)| {
                Ok(OutputChunk {
                    stream,
                    data: Bytes::copy_from_slice(data.as_bytes()),
                })
            })
            .collect();
        futures::stream::iter(chunks).boxed()
    }

    #[tokio::test]
    async fn a_shell_comes_back_only_with_exactly_its_ready_lines() {
        use OutputStream::{Stderr, Stdout};
        let line = ready_line("n0");
        let (head, tail) = line.split_at(5);
        // Split across reads, one stream's line already in.
        let rest = stream(vec![(Stderr, head), (Stderr, tail), (Stdout, "next")]);
        let mut back = comes_back(rest, [Bytes::from(line.clone()), Bytes::new()], "n0")
            .await
            .expect("both lines: back");
        let next = back.next().await.unwrap().unwrap();
        assert_eq!(
            next.data,
            Bytes::from("next"),
            "the stream goes on after them"
        );

        for (rest, after) in [
            // Output of a child left behind before the line.
            (stream(vec![(Stderr, &line)]), format!("late{line}")),
            // Another process's nonce.
            (stream(vec![(Stderr, &line)]), ready_line("n1")),
            // More after the line.
            (stream(vec![(Stderr, &format!("{line}x"))]), line.clone()),
            // The stream ends first.
            (stream(vec![(Stderr, head)]), line.clone()),
        ] {
            assert!(
                comes_back(rest, [Bytes::from(after.clone()), Bytes::new()], "n0")
                    .await
                    .is_none(),
                "{after:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_command_is_done_only_with_exactly_its_line_on_stdout() {
        use OutputStream::{Stderr, Stdout};
        let line = "\u{1e}aac-done:n0\n";
        let (head, tail) = line.split_at(4);
        let mut split = stream(vec![(Stdout, head), (Stdout, tail), (Stdout, "next")]);
        assert!(says_done(&mut split, "n0").await, "split across reads");
        for chunks in [
            vec![(Stderr, line)],
            vec![(Stdout, "\u{1e}aac-done:n1\n")],
            vec![(Stdout, "noise"), (Stdout, line)],
            vec![(Stdout, head)],
        ] {
            let shown = format!("{chunks:?}");
            assert!(!says_done(&mut stream(chunks), "n0").await, "{shown}");
        }
    }
}
