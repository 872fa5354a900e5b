//! Driver-independent process policy: ordered output with backpressure, per-process timeout and idle
//! timeout, TERM → grace → KILL escalation, cancellation, and kill-on-drop.

use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use bytes::BytesMut;

use super::{ExecSpec, ExitInfo, KillReason, OutputChunk, OutputStream, RawProcess, Signal};

/// Output bytes the host reads from the engine ahead of the plugin's reads. Docker closes an
/// exec's streams 2 s after its process exits, whether or not the client has read them: a plugin
/// slower than the process (a loaded machine, a flood) would lose the process's last output without
/// a word. Reading ahead keeps the engine's pipe drained; past this bound the process is slowed
/// down instead (a plugin that never reads cannot make the host hold more).
const READ_AHEAD_BYTES: usize = 4 << 20;

/// Consecutive chunks of one stream read ahead are joined up to this size. The engine's chunks are
/// slices of its read buffers: held as they come, a few KiB of output kept a buffer many times
/// that size alive (4 MiB read ahead pinned 50 MiB). Copied into buffers of their own, the bytes
/// held are the bytes counted, and the plugin reads a flood in fewer, larger pieces.
const JOIN_BYTES: usize = 64 << 10;

/// Host-side policy for processes.
#[derive(Clone, Copy, Debug)]
pub struct ProcessLimits {
    /// Time between TERM and KILL.
    pub kill_grace: Duration,
    /// Output chunks buffered ahead of the plugin's reads before the process is slowed down.
    pub buffered_chunks: usize,
    /// Processes one session may hold open at once (handles not yet dropped).
    pub max_open: usize,
    /// Bytes of one exec request's argv and env together.
    pub max_request_bytes: usize,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        Self {
            kill_grace: Duration::from_secs(5),
            buffered_chunks: 64,
            max_open: 64,
            max_request_bytes: 1 << 20,
        }
    }
}

/// A running process, as the plugin host sees it.
pub struct ProcessHandle {
    output: mpsc::Receiver<OutputChunk>,
    stdin: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    kill: mpsc::UnboundedSender<KillReason>,
    exit: watch::Receiver<Option<ExitInfo>>,
}

impl ProcessHandle {
    /// Starts the pump task for `raw`. `cancel` kills the process with [`KillReason::Cancelled`].
    pub fn start(
        raw: RawProcess,
        spec: &ExecSpec,
        limits: ProcessLimits,
        cancel: CancellationToken,
    ) -> Self {
        let (output_tx, output_rx) = mpsc::channel(limits.buffered_chunks.max(1));
        let (kill_tx, kill_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        let pump = Pump {
            timeout: spec.timeout,
            idle_timeout: spec.idle_timeout,
            grace: limits.kill_grace,
            cancel,
        };
        tokio::spawn(pump.run(raw.output, raw.control, output_tx, kill_rx, exit_tx));
        Self {
            output: output_rx,
            stdin: raw.stdin,
            kill: kill_tx,
            exit: exit_rx,
        }
    }

    /// The next chunk of output; `None` once both streams have ended.
    pub async fn read(&mut self) -> Option<OutputChunk> {
        self.output.recv().await
    }

    pub async fn write_stdin(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("stdin is not piped or already closed"))?;
        stdin.write_all(data).await?;
        stdin.flush().await?;
        Ok(())
    }

    pub async fn close_stdin(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
    }

    /// Waits for the exit status, discarding output nobody read.
    pub async fn wait(&mut self) -> ExitInfo {
        self.stdin = None;
        self.output.close();
        while self.output.recv().await.is_some() {}
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(info) => info.clone().unwrap_or_default(),
            Err(_) => ExitInfo {
                sandbox_error: Some("the process pump stopped without an exit status".into()),
                ..ExitInfo::default()
            },
        }
    }

    /// Asks for the process to be killed (TERM, grace, KILL).
    pub fn kill(&self, reason: KillReason) {
        let _ = self.kill.send(reason);
    }

    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        if !self.has_exited() {
            self.kill(KillReason::Requested);
        }
    }
}

struct Pump {
    timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    grace: Duration,
    cancel: CancellationToken,
}

impl Pump {
    async fn run(
        self,
        mut output: futures::stream::BoxStream<'static, anyhow::Result<OutputChunk>>,
        control: std::sync::Arc<dyn super::ProcessControl>,
        output_tx: mpsc::Sender<OutputChunk>,
        mut kill_rx: mpsc::UnboundedReceiver<KillReason>,
        exit_tx: watch::Sender<Option<ExitInfo>>,
    ) {
        let started = Instant::now();
        let deadline = self.timeout.map(|t| started + t);
        let mut last_output = started;
        // Read from the engine, not yet handed to the plugin (at most READ_AHEAD_BYTES).
        let mut ahead = ReadAhead::default();
        let mut killed: Option<KillReason> = None;
        let mut escalation: Option<tokio::task::JoinHandle<()>> = None;
        let mut stream_error: Option<String> = None;
        let far_future = started + Duration::from_secs(86400 * 365);

        loop {
            let idle_deadline = self.idle_timeout.map(|idle| last_output + idle);
            let reason = tokio::select! {
                biased;
                chunk = output.next(), if ahead.bytes < READ_AHEAD_BYTES => {
                    match chunk {
                        Some(Ok(chunk)) => {
                            last_output = Instant::now();
                            ahead.push(chunk);
                            continue;
                        }
                        Some(Err(err)) => {
                            stream_error = Some(format!("{err:#}"));
                            break;
                        }
                        None => break,
                    }
                }
                permit = output_tx.reserve(), if !ahead.is_empty() => {
                    match permit {
                        Ok(permit) => permit.send(ahead.pop().expect("checked non-empty")),
                        // A reader that went away only means the output is discarded.
                        Err(_) => ahead = ReadAhead::default(),
                    }
                    continue;
                }
                Some(reason) = kill_rx.recv(), if killed.is_none() => reason,
                _ = self.cancel.cancelled(), if killed.is_none() => KillReason::Cancelled,
                _ = sleep_until(deadline.unwrap_or(far_future)), if killed.is_none() && deadline.is_some() => KillReason::Timeout,
                _ = sleep_until(idle_deadline.unwrap_or(far_future)), if killed.is_none() && idle_deadline.is_some() => KillReason::IdleTimeout,
            };
            debug!(reason = reason.as_str(), "killing process");
            killed = Some(reason);
            escalation = Some(tokio::spawn(escalate(control.clone(), self.grace)));
        }
        while let Some(chunk) = ahead.pop() {
            if output_tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(output_tx);
        if let Some(escalation) = escalation {
            escalation.abort();
        }

        debug!(
            ran_ms = started.elapsed().as_millis() as u64,
            last_output_ms = last_output.duration_since(started).as_millis() as u64,
            "output ended; reading the exit status"
        );
        let mut info = match control.exit_info().await {
            Ok(info) => info,
            Err(err) => {
                warn!(error = %format!("{err:#}"), "could not read the exit status");
                ExitInfo {
                    sandbox_error: Some(format!("{err:#}")),
                    ..ExitInfo::default()
                }
            }
        };
        info.killed = killed.or(info.killed);
        if info.sandbox_error.is_none() {
            info.sandbox_error = stream_error;
        }
        debug!(code = ?info.code, ran_ms = started.elapsed().as_millis() as u64, "process exited");
        let _ = exit_tx.send(Some(info));
    }
}

/// Output read from the engine and not yet handed to the plugin, in order, in buffers of its own.
#[derive(Default)]
struct ReadAhead {
    chunks: std::collections::VecDeque<(OutputStream, BytesMut)>,
    bytes: usize,
}

impl ReadAhead {
    fn push(&mut self, chunk: OutputChunk) {
        self.bytes += chunk.data.len();
        match self.chunks.back_mut() {
            Some((stream, data))
                if *stream == chunk.stream && data.len() + chunk.data.len() <= JOIN_BYTES =>
            {
                data.extend_from_slice(&chunk.data);
            }
            _ => self
                .chunks
                .push_back((chunk.stream, BytesMut::from(&chunk.data[..]))),
        }
    }

    fn pop(&mut self) -> Option<OutputChunk> {
        let (stream, data) = self.chunks.pop_front()?;
        self.bytes -= data.len();
        Some(OutputChunk {
            stream,
            data: data.freeze(),
        })
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

async fn escalate(control: std::sync::Arc<dyn super::ProcessControl>, grace: Duration) {
    if let Err(err) = control.signal(Signal::Term).await {
        warn!(error = %format!("{err:#}"), "TERM failed; sending KILL");
    } else {
        tokio::time::sleep(grace).await;
    }
    if let Err(err) = control.signal(Signal::Kill).await {
        warn!(error = %format!("{err:#}"), "KILL failed");
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn chunk(stream: OutputStream, data: &[u8]) -> OutputChunk {
        OutputChunk {
            stream,
            data: Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn read_ahead_joins_a_streams_consecutive_chunks_and_keeps_the_order_between_streams() {
        let mut ahead = ReadAhead::default();
        ahead.push(chunk(OutputStream::Stdout, b"a"));
        ahead.push(chunk(OutputStream::Stdout, b"b"));
        ahead.push(chunk(OutputStream::Stderr, b"c"));
        ahead.push(chunk(OutputStream::Stdout, b"d"));
        assert_eq!(ahead.bytes, 4);
        let out: Vec<_> = std::iter::from_fn(|| ahead.pop())
            .map(|c| (c.stream, c.data))
            .collect();
        assert_eq!(
            out,
            [
                (OutputStream::Stdout, Bytes::from_static(b"ab")),
                (OutputStream::Stderr, Bytes::from_static(b"c")),
                (OutputStream::Stdout, Bytes::from_static(b"d")),
            ]
        );
        assert_eq!(ahead.bytes, 0);
        assert!(ahead.is_empty());
    }

    #[test]
    fn read_ahead_copies_out_of_the_engines_buffer_and_stops_joining_at_the_bound() {
        let mut ahead = ReadAhead::default();
        // A small slice of a big buffer: what is held must not be the big buffer.
        let engine_buffer = Bytes::from(vec![b'x'; 1 << 20]);
        ahead.push(OutputChunk {
            stream: OutputStream::Stdout,
            data: engine_buffer.slice(..10),
        });
        assert!(ahead.chunks[0].1.capacity() < 1 << 10);
        ahead.push(chunk(OutputStream::Stdout, &vec![b'y'; JOIN_BYTES]));
        assert_eq!(
            ahead.chunks.len(),
            2,
            "a join past JOIN_BYTES starts a new buffer"
        );
        assert_eq!(ahead.bytes, 10 + JOIN_BYTES);
    }
}
