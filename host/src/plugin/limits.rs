//! Per-session limits: a memory cap enforced by a store limiter, and a CPU budget per call counted
//! while the plugin's own code runs (time spent waiting on host calls is not counted).

use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;

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
            event_bytes: 256 << 10,
            events_per_second: 10_000,
            turn_output_bytes: 64 << 20,
            result_bytes: 64 << 10,
        }
    }
}

/// Denies memory growth past the limit and remembers that it did, so the resulting trap can be
/// reported as `resource-exhausted` rather than a crash.
pub struct MemoryLimiter {
    limit: usize,
    in_use: usize,
    pub exceeded: bool,
}

impl MemoryLimiter {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            in_use: 0,
            exceeded: false,
        }
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

    /// The plugin called into the host: stop counting.
    pub fn enter_host(&mut self) {
        if let Some(resumed) = self.resumed_at.take() {
            self.used += resumed.elapsed();
        }
    }

    /// The host call returned: count again.
    pub fn leave_host(&mut self) {
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
