//! Per-session limits: a memory cap enforced by a store limiter, and a CPU budget per call counted
//! while the plugin's own code runs (time spent waiting on host calls is not counted).

use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;

/// Limits applied to every session of a plugin.
#[derive(Clone, Copy, Debug)]
pub struct PluginLimits {
    /// Linear memory per session, across all of the component's memories.
    pub memory_bytes: usize,
    /// CPU time the plugin's own code may use in one call (`start`, `run-turn`, `close`).
    pub call_cpu: Duration,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            call_cpu: Duration::from_secs(10),
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
    limit: Duration,
    used: Duration,
    /// When the plugin's code last resumed: at call start, or when a host call returned.
    resumed_at: Option<Instant>,
    pub exceeded: bool,
}

impl CpuBudget {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            used: Duration::ZERO,
            resumed_at: None,
            exceeded: false,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// A new export call starts.
    pub fn start_call(&mut self) {
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
