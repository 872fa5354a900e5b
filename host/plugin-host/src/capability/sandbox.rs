//! `aac:plugin/sandbox`: processes in the session's sandbox, as `process` resources.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wasmtime::component::Resource;

use crate::bindings::backend::aac::plugin::sandbox::{
    ExecError, ExecRequest, ExitStatus, Host, HostProcess, KillReason as WitKillReason,
    OutputChunk, OutputStream, StdinMode,
};
use crate::state::{BackendWorld, SessionState};
use aac_sandbox::{self as sandbox, ExecSpec, KillReason, ProcessHandle, ProcessLimits, Sandbox};

pub struct SandboxCapability {
    sandbox: Option<Arc<dyn Sandbox>>,
    limits: ProcessLimits,
    /// Cancelled when the current turn is cancelled: kills every process of the session.
    pub(crate) cancel: CancellationToken,
    /// Set when the sandbox was found gone during the current turn: the host then reports
    /// `sandbox-lost`, whatever the plugin concludes.
    pub(crate) lost: Option<String>,
    /// Process handles the plugin holds (started, not yet dropped).
    open: usize,
    starts: StartPace,
}

impl SandboxCapability {
    pub fn new(
        sandbox: Option<Arc<dyn Sandbox>>,
        limits: ProcessLimits,
        starts: StartPace,
    ) -> Self {
        Self {
            sandbox,
            limits,
            cancel: CancellationToken::new(),
            lost: None,
            open: 0,
            starts,
        }
    }
}

/// A session's process starts as a token bucket: `burst` at once, then `per_second`. Each start
/// costs the Docker engine CPU outside every limit the plugin runs under, so a plugin starting
/// processes in a loop is slowed to this pace (it waits; nothing is refused). Past its burst a
/// session's starts also take turns host-wide ([`PacedStarts`]), so seven sessions starting in a
/// loop cost the engine no more than one does.
#[derive(Clone, Debug)]
pub struct StartPace {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    host: PacedStarts,
}

impl StartPace {
    pub fn new(per_second: f64, burst: u32, host: PacedStarts) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second,
            burst,
            tokens: burst,
            refilled: Instant::now(),
            host,
        }
    }

    /// Takes the next start's token at `now`: how long that start must wait for it.
    fn take(&mut self, now: Instant) -> Duration {
        let earned = now.saturating_duration_since(self.refilled).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.refilled = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        let own = Duration::from_secs_f64(-self.tokens / self.per_second);
        let wait = self.host.reserve(now, own);
        if wait > own {
            // Held past its own pace by the host's: what the session would earn while it waits
            // is not a new burst, or a loop of starts would alternate between paced and not.
            self.tokens = 0.0;
            self.refilled = now + wait;
        }
        wait
    }
}

/// The process starts of the host's sessions that are past their burst, as one timeline: each
/// such start takes the next free slot, `1 / per_second` after the last one taken, so together
/// they start at most `per_second` processes a second (`[limits] paced_process_starts`). Starts
/// within a session's burst do not take a slot: a healthy plugin's few starts never wait here.
#[derive(Clone, Debug)]
pub struct PacedStarts {
    per_second: f64,
    next_free: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl PacedStarts {
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            next_free: Arc::default(),
        }
    }

    /// Reserves the first slot no earlier than `now + own`: how long from `now` until it.
    fn reserve(&self, now: Instant, own: Duration) -> Duration {
        let mut next_free = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = now + own;
        let slot = next_free.map_or(earliest, |free| free.max(earliest));
        *next_free = Some(slot + Duration::from_secs_f64(1.0 / self.per_second));
        slot - now
    }
}

impl Host for SessionState<BackendWorld> {
    async fn exec(
        &mut self,
        request: ExecRequest,
    ) -> wasmtime::Result<Result<Resource<ProcessHandle>, ExecError>> {
        let Some(sandbox) = self.world.sandbox.sandbox.clone() else {
            return Ok(Err(ExecError::SandboxLost(
                "this session has no sandbox".into(),
            )));
        };
        if let Err(refused) = self.world.sandbox.admit(&request) {
            return Ok(Err(refused));
        }
        let wait = self.world.sandbox.starts.take(Instant::now());
        if !wait.is_zero() {
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "process start paced ([limits] process_starts_per_second)"
            );
            let cancel = self.world.sandbox.cancel.clone();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => {
                    return Ok(Err(ExecError::SpawnFailed(
                        "the turn was cancelled while the process waited for its start".into(),
                    )));
                }
            }
        }
        let spec = ExecSpec {
            argv: request.argv,
            env: request.env,
            cwd: request.cwd,
            stdin_piped: matches!(request.stdin, StdinMode::Piped),
            timeout: request.timeout_ms.map(Duration::from_millis),
            idle_timeout: request.idle_timeout_ms.map(Duration::from_millis),
        };
        // Only the program's file name: arguments and environment may carry secrets.
        let program = spec
            .argv
            .first()
            .map(|arg0| arg0.rsplit('/').next().unwrap_or(arg0).to_owned())
            .unwrap_or_default();
        let span = tracing::info_span!("exec", process.executable.name = %program);
        let asked = Instant::now();
        let started = sandbox.exec(spec.clone()).instrument(span).await;
        tracing::debug!(
            took_ms = asked.elapsed().as_millis() as u64,
            ok = started.is_ok(),
            "process start answered"
        );
        let raw = match started {
            Ok(raw) => raw,
            Err(err) => {
                if let sandbox::ExecError::SandboxLost(message) = &err {
                    self.world.sandbox.lost = Some(message.clone());
                }
                return Ok(Err(exec_error(err)));
            }
        };
        let handle = ProcessHandle::start(
            raw,
            &spec,
            self.world.sandbox.limits,
            self.world.sandbox.cancel.child_token(),
        );
        let handle = self.table.push(handle)?;
        self.world.sandbox.open += 1;
        Ok(Ok(handle))
    }
}

impl SandboxCapability {
    /// Refuses a request past the session's bounds before anything reaches the sandbox.
    fn admit(&self, request: &ExecRequest) -> Result<(), ExecError> {
        let limits = self.limits;
        if self.open >= limits.max_open {
            return Err(ExecError::SpawnFailed(format!(
                "the session already holds {} processes, its limit: drop finished ones first",
                limits.max_open
            )));
        }
        let bytes: usize = request.argv.iter().map(|arg| arg.len() + 1).sum::<usize>()
            + request
                .env
                .iter()
                .map(|(key, value)| key.len() + value.len() + 2)
                .sum::<usize>()
            + request.cwd.as_ref().map_or(0, String::len);
        if bytes > limits.max_request_bytes {
            return Err(ExecError::InvalidRequest(format!(
                "argv, env and cwd take {bytes} bytes, over the limit of {} bytes",
                limits.max_request_bytes
            )));
        }
        Ok(())
    }
}

/// The process behind `handle`, or an error naming the cause: a handle the host never gave out
/// (forged) or one the plugin already dropped.
fn open_process<'a>(
    table: &'a mut wasmtime::component::ResourceTable,
    handle: &Resource<ProcessHandle>,
) -> wasmtime::Result<&'a mut ProcessHandle> {
    table.get_mut(handle).map_err(|err| {
        wasmtime::Error::msg(format!(
            "the plugin used process handle {} that is not open (forged, or already dropped): {err}",
            handle.rep()
        ))
    })
}

fn exec_error(err: sandbox::ExecError) -> ExecError {
    match err {
        sandbox::ExecError::InvalidRequest(msg) => ExecError::InvalidRequest(msg),
        sandbox::ExecError::SpawnFailed(msg) => ExecError::SpawnFailed(msg),
        sandbox::ExecError::SandboxLost(msg) => ExecError::SandboxLost(msg),
    }
}

impl HostProcess for SessionState<BackendWorld> {
    async fn read(
        &mut self,
        process: Resource<ProcessHandle>,
    ) -> wasmtime::Result<Option<OutputChunk>> {
        let chunk = open_process(&mut self.table, &process)?.read().await;
        Ok(chunk.map(|chunk| OutputChunk {
            stream: match chunk.stream {
                sandbox::OutputStream::Stdout => OutputStream::Stdout,
                sandbox::OutputStream::Stderr => OutputStream::Stderr,
            },
            data: chunk.data.to_vec(),
        }))
    }

    async fn write_stdin(
        &mut self,
        process: Resource<ProcessHandle>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let written = open_process(&mut self.table, &process)?
            .write_stdin(&data)
            .await;
        Ok(written.map_err(|err| format!("{err:#}")))
    }

    async fn close_stdin(&mut self, process: Resource<ProcessHandle>) -> wasmtime::Result<()> {
        open_process(&mut self.table, &process)?.close_stdin().await;
        Ok(())
    }

    async fn wait(&mut self, process: Resource<ProcessHandle>) -> wasmtime::Result<ExitStatus> {
        let info = open_process(&mut self.table, &process)?.wait().await;
        if let Some(message) = &info.sandbox_error {
            self.world.sandbox.lost = Some(message.clone());
        }
        Ok(ExitStatus {
            code: info.code,
            killed: info.killed.is_some(),
            kill_reason: info.killed.map(|reason| match reason {
                KillReason::Timeout => WitKillReason::Timeout,
                KillReason::IdleTimeout => WitKillReason::IdleTimeout,
                KillReason::Cancelled => WitKillReason::Cancelled,
                KillReason::Requested => WitKillReason::Requested,
            }),
            oom_killed: info.oom_killed,
        })
    }

    async fn kill(&mut self, process: Resource<ProcessHandle>) -> wasmtime::Result<()> {
        open_process(&mut self.table, &process)?.kill(KillReason::Requested);
        Ok(())
    }

    async fn drop(&mut self, handle: Resource<ProcessHandle>) -> wasmtime::Result<()> {
        // Dropping the handle kills a process that is still running.
        open_process(&mut self.table, &handle)?;
        self.table.delete(handle)?;
        self.world.sandbox.open = self.world.sandbox.open.saturating_sub(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_past_the_burst_wait_for_the_pace() {
        let mut pace = StartPace::new(2.0, 3, PacedStarts::new(1000.0));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(pace.take(t0), Duration::ZERO, "the burst starts at once");
        }
        // Two per second: the 4th waits 0.5 s, the 5th 1 s (each reserves its own slot).
        assert_eq!(pace.take(t0), Duration::from_millis(500));
        assert_eq!(pace.take(t0), Duration::from_millis(1000));
        // Time refills the bucket, up to the burst and never past it.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(pace.take(later), Duration::ZERO);
        }
        assert!(pace.take(later) > Duration::ZERO);
    }

    #[test]
    fn sessions_past_their_burst_share_the_hosts_pace() {
        let host = PacedStarts::new(2.0);
        let (mut a, mut b) = (
            StartPace::new(4.0, 2, host.clone()),
            StartPace::new(4.0, 2, host.clone()),
        );
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(a.take(t0), Duration::ZERO, "a's burst is its own");
            assert_eq!(b.take(t0), Duration::ZERO, "so is b's");
        }
        // Past their bursts both want a start 250 ms from now (their own pace, 4 a second); the
        // host's two a second give them slots 500 ms apart, whoever asks.
        assert_eq!(a.take(t0), Duration::from_millis(250));
        assert_eq!(b.take(t0), Duration::from_millis(750));
        assert_eq!(a.take(t0), Duration::from_millis(1250));
        // Held by the host's slots, a session earns no new burst while it waits: right after its
        // slot (t0 + 1.25 s) its next start is still paced, 500 ms after the last slot taken.
        let after = t0 + Duration::from_millis(1300);
        assert_eq!(a.take(after), Duration::from_millis(450));
        // A session within its burst does not wait for the slots the others took.
        let mut c = StartPace::new(4.0, 2, host);
        assert_eq!(c.take(t0), Duration::ZERO);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(a.take(later), Duration::ZERO, "10 s refilled a's burst");
    }
}
