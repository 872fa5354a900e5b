//! Per-session limits: a memory cap enforced by a store limiter, a CPU budget per call counted
//! while the plugin's own code runs (time spent in host calls, WASI waits included, is not counted),
//! and a wall-clock deadline per call (see [`super::deadline`]) for a plugin that only waits.

use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;

use super::stderr_tail::StderrTail;

/// Limits applied to every session of a plugin. Going past any of them ends that session only,
/// with a failure kind naming the limit (`backend-timeout` for CPU, `resource-exhausted` else).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PluginLimits {
    /// Linear memory per session, across all of the component's memories.
    pub memory_bytes: usize,
    /// CPU time the plugin's own code may use in one call other than a turn (`describe`, `start`,
    /// `close`, `materialize`).
    pub call_cpu: Duration,
    /// CPU time the plugin's own code may use in one `run-turn`.
    pub turn_cpu: Duration,
    /// Wall-clock time one call other than a turn may take, waiting included.
    pub call_wall: Duration,
    /// Wall-clock time one `run-turn` may take, waiting on its processes included.
    pub turn_wall: Duration,
    /// Largest event (kind + payload) the plugin may emit.
    pub event_bytes: usize,
    /// Sustained events per second; a burst of as many is allowed at once.
    pub events_per_second: u32,
    /// Bytes of events one turn may emit in total: what the host buffers before shipping.
    pub turn_output_bytes: u64,
    /// Longest string a plugin may return in a result (a turn's message, ids, its description).
    pub result_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            call_cpu: Duration::from_secs(10),
            turn_cpu: Duration::from_secs(10),
            call_wall: Duration::from_secs(60),
            turn_wall: Duration::from_secs(4 * 3600),
            event_bytes: 256 << 10,
            events_per_second: 10_000,
            turn_output_bytes: 64 << 20,
            result_bytes: 64 << 10,
        }
    }
}

/// Denies memory growth past the limit and remembers that it did in the current call, so the
/// resulting trap can be reported as `resource-exhausted` rather than a crash.
pub struct MemoryLimiter {
    limit: usize,
    in_use: usize,
    /// A grow was refused during the current call.
    pub exceeded: bool,
    /// How much the plugin had written to stderr at the last refusal: what it wrote after tells
    /// whether the call ended of it or of something else (a panic).
    pub refused_at: u64,
    stderr: StderrTail,
}

impl MemoryLimiter {
    pub fn new(limit: usize, stderr: StderrTail) -> Self {
        Self {
            limit,
            in_use: 0,
            exceeded: false,
            refused_at: 0,
            stderr,
        }
    }

    /// A new call starts: a refusal the plugin handled earlier explains nothing of it.
    pub fn start_call(&mut self) {
        self.exceeded = false;
    }

    /// What the plugin wrote to stderr since the last refused grow.
    pub fn stderr_since_refusal(&self) -> Vec<u8> {
        self.stderr.since(self.refused_at)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.in_use - current.min(self.in_use) + desired;
        if total > self.limit {
            self.exceeded = true;
            self.refused_at = self.stderr.written();
            return Ok(false);
        }
        self.in_use = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// CPU time of the plugin's code in the current call.
pub struct CpuBudget {
    call_limit: Duration,
    turn_limit: Duration,
    limit: Duration,
    used: Duration,
    /// When the plugin's code last resumed: at call start, or when a host call returned.
    resumed_at: Option<Instant>,
    pub exceeded: bool,
}

impl CpuBudget {
    pub fn new(call_limit: Duration, turn_limit: Duration) -> Self {
        Self {
            call_limit,
            turn_limit,
            limit: call_limit,
            used: Duration::ZERO,
            resumed_at: None,
            exceeded: false,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// CPU the plugin's code used in the current call so far.
    pub fn used(&self) -> Duration {
        self.used
    }

    /// A new export call other than a turn starts.
    pub fn start_call(&mut self) {
        self.limit = self.call_limit;
        self.used = Duration::ZERO;
        self.resumed_at = Some(Instant::now());
    }

    /// A `run-turn` call starts.
    pub fn start_turn(&mut self) {
        self.limit = self.turn_limit;
        self.used = Duration::ZERO;
        self.resumed_at = Some(Instant::now());
    }

    /// The plugin's code stopped running (it called into the host, or its call returned): stop
    /// counting. Called from the Store's call hook, for every host call alike.
    pub fn pause(&mut self) {
        if let Some(resumed) = self.resumed_at.take() {
            self.used += resumed.elapsed();
        }
    }

    /// The plugin's code runs again (a host call returned, or the host called into it).
    pub fn resume(&mut self) {
        self.resumed_at = Some(Instant::now());
    }

    /// Called on every epoch tick the plugin's code observes. True when the budget is spent.
    pub fn tick(&mut self) -> bool {
        let now = Instant::now();
        if let Some(resumed) = self.resumed_at.replace(now) {
            self.used += now - resumed;
        }
        if self.used > self.limit {
            self.exceeded = true;
        }
        self.exceeded
    }
}
