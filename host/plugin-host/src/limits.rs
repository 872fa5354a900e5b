//! Per-session limits: a memory cap enforced by a store limiter, a CPU budget per call counted
//! while the plugin's own code runs (time spent in host calls, WASI waits included, is not counted),
//! and a wall-clock deadline per call (see [`super::deadline`]) for a plugin that only waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The share of one core the plugin's code may use once its burst is spent: past it the
    /// plugin is paused at its next epoch tick until it is back under. An adapter's work is
    /// parsing lines; the agent's work runs in its sandbox, under the sandbox's cgroup.
    pub cpu_share: f64,
    /// CPU the plugin's code may use at full speed before `cpu_share` applies; refilled at
    /// `cpu_share` while it waits or is paused. Short: every new session starts with a full
    /// burst, and seven spinning plugins' 500 ms bursts at once held a healthy turn 9× longer
    /// (docs/benchmarks.md, "A healthy turn among hostile runs").
    pub cpu_burst: Duration,
    /// Cores all paced plugins of the host share: N plugins past their burst at once each get
    /// `min(cpu_share, paced_cpu / N)`, so seven spinning plugins hold no more than two do.
    pub paced_cpu: f64,
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
    /// Processes a session may start per second once its burst is spent; past it `exec` waits
    /// (host time, not the plugin's CPU). A start may cost a `docker exec`, ~90 ms of the Docker
    /// engine's CPU that no limit of the plugin or its sandbox counts: a loop of starts would hold
    /// the host's cores through the engine (docs/configuration.md, `[limits]`).
    pub process_starts_per_second: f64,
    /// Process starts a session may make at once before `process_starts_per_second` applies.
    pub process_start_burst: u32,
    /// Process starts per second that all sessions past their burst share, host-wide: each of
    /// their starts waits for the next free slot, so many plugins starting in a loop cost the
    /// engine no more than this (a start within a session's burst never waits for it).
    pub paced_process_starts: f64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            call_cpu: Duration::from_secs(10),
            turn_cpu: Duration::from_secs(10),
            cpu_share: 0.25,
            cpu_burst: Duration::from_millis(100),
            paced_cpu: 0.25,
            call_wall: Duration::from_secs(60),
            turn_wall: Duration::from_secs(4 * 3600),
            event_bytes: 256 << 10,
            events_per_second: 10_000,
            turn_output_bytes: 64 << 20,
            result_bytes: 64 << 10,
            process_starts_per_second: 4.0,
            process_start_burst: 8,
            paced_process_starts: 2.0,
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

/// CPU time of the plugin's code in the current call, and its share of a core.
pub struct CpuBudget {
    call_limit: Duration,
    turn_limit: Duration,
    limit: Duration,
    used: Duration,
    /// When the plugin's code last resumed: at call start, or when a host call returned.
    resumed_at: Option<Instant>,
    share: CpuShare,
    pub exceeded: bool,
}

/// What the epoch callback does after a tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tick {
    /// Yield to the executor and go on.
    Continue,
    /// The plugin is over its share of a core: pause it this long before it goes on.
    Pause(Duration),
    /// The CPU budget is spent: trap.
    Exceeded,
}

impl CpuBudget {
    pub fn new(limits: &PluginLimits, paced: PacedPlugins) -> Self {
        Self {
            call_limit: limits.call_cpu,
            turn_limit: limits.turn_cpu,
            limit: limits.call_cpu,
            used: Duration::ZERO,
            resumed_at: None,
            share: CpuShare::new(limits.cpu_share, limits.cpu_burst, paced),
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
            self.charge(resumed, Instant::now());
        }
    }

    /// Counts the plugin's code as running from `resumed` to `now`, less a pause in between.
    fn charge(&mut self, resumed: Instant, now: Instant) {
        let ran = now.saturating_duration_since(self.share.paused_until(resumed));
        self.used += ran;
        self.share.owe(ran);
    }

    /// The plugin's code runs again (a host call returned, or the host called into it).
    pub fn resume(&mut self) {
        self.resumed_at = Some(Instant::now());
    }

    /// Called on every epoch tick the plugin's code observes: charges the time since it resumed
    /// (or since its last pause ended) and says whether it goes on, pauses or traps.
    pub fn tick(&mut self) -> Tick {
        let now = Instant::now();
        if let Some(resumed) = self.resumed_at.replace(now) {
            self.charge(resumed, now);
        }
        if self.used > self.limit {
            self.exceeded = true;
        }
        if self.exceeded {
            return Tick::Exceeded;
        }
        match self.share.settle(now) {
            Some(pause) => Tick::Pause(pause),
            None => Tick::Continue,
        }
    }
}

/// The plugins of one host that are past their burst (paced), and the cores they share: each
/// gets `min(cpu_share, paced_cpu / N)` of a core for N of them. Without it every spinning plugin
/// would get its own `cpu_share`, and enough of them would hold the cores again.
#[derive(Clone, Debug)]
pub struct PacedPlugins {
    cores: f64,
    paced: Arc<AtomicUsize>,
}

impl PacedPlugins {
    pub fn new(cores: f64) -> Self {
        Self {
            cores,
            paced: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many plugins are paced now.
    pub fn count(&self) -> usize {
        self.paced.load(Ordering::Relaxed)
    }

    /// The share of a core each paced plugin gets now, at most `own`.
    fn share(&self, own: f64) -> f64 {
        own.min(self.cores / self.count().max(1) as f64)
    }
}

/// A token bucket of CPU time: `burst` full, refilled at the plugin's share of wall-clock time,
/// drained by the plugin's code. Empty, the plugin pauses until the bucket is back at zero. From
/// the moment it first empties until it is full again, the plugin counts as paced host-wide
/// ([`PacedPlugins`]), and its share is its part of the paced plugins' cores.
struct CpuShare {
    share: f64,
    burst: f64,
    /// Seconds of CPU left; negative while the plugin owes a pause.
    tokens: f64,
    /// CPU run since the bucket was last settled, host calls in between included.
    owed: Duration,
    refilled_at: Instant,
    pause_ends: Option<Instant>,
    host: PacedPlugins,
    /// Whether this plugin is counted in `host`.
    paced: bool,
}

impl CpuShare {
    fn new(share: f64, burst: Duration, host: PacedPlugins) -> Self {
        Self {
            share,
            burst: burst.as_secs_f64(),
            tokens: burst.as_secs_f64(),
            owed: Duration::ZERO,
            refilled_at: Instant::now(),
            pause_ends: None,
            host,
            paced: false,
        }
    }

    /// When the pause that began after `resumed` ended (or `resumed` if there was none): a
    /// pause is not CPU.
    fn paused_until(&self, resumed: Instant) -> Instant {
        self.pause_ends
            .filter(|end| *end > resumed)
            .unwrap_or(resumed)
    }

    /// Notes `ran` of CPU, taken from the bucket at the next [`Self::settle`].
    fn owe(&mut self, ran: Duration) {
        self.owed += ran;
    }

    /// Refills the bucket for the time since the last settle, takes what the plugin ran, and
    /// returns the pause that brings it back to zero, if it is below.
    fn settle(&mut self, now: Instant) -> Option<Duration> {
        let ran = std::mem::take(&mut self.owed);
        if self.share >= 1.0 {
            return None;
        }
        let waited = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.refilled_at = now;
        let share = self.current_share();
        self.tokens = (self.tokens + waited * share).min(self.burst) - ran.as_secs_f64();
        if self.tokens >= self.burst {
            self.set_paced(false);
        }
        if self.tokens >= 0.0 {
            return None;
        }
        self.set_paced(true);
        let pause = Duration::from_secs_f64(-self.tokens / self.current_share());
        self.pause_ends = Some(now + pause);
        Some(pause)
    }

    /// This plugin's share of a core now: its own while it is inside its burst, its part of the
    /// paced plugins' cores after.
    fn current_share(&self) -> f64 {
        if self.paced {
            self.host.share(self.share)
        } else {
            self.share
        }
    }

    fn set_paced(&mut self, paced: bool) {
        if paced != self.paced {
            self.paced = paced;
            if paced {
                self.host.paced.fetch_add(1, Ordering::Relaxed);
            } else {
                self.host.paced.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        self.set_paced(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinning_plugin_gets_its_burst_then_its_share() {
        let start = Instant::now();
        let mut share = CpuShare::new(0.25, Duration::from_millis(100), PacedPlugins::new(1.0));
        share.refilled_at = start;
        let tick = Duration::from_millis(1);
        let (mut now, mut ran, mut paused) = (start, Duration::ZERO, Duration::ZERO);
        // Spin for 10 s of wall-clock time, one tick at a time, pausing when told to.
        while now < start + Duration::from_secs(10) {
            now += tick;
            ran += tick;
            share.owe(tick);
            if let Some(pause) = share.settle(now) {
                assert!(ran > Duration::from_millis(99), "paused inside its burst");
                now += pause;
                paused += pause;
            }
        }
        let wall = (now - start).as_secs_f64();
        let used = ran.as_secs_f64();
        let expected = 0.1 + 0.25 * wall;
        assert!(
            (used - expected).abs() < 0.01,
            "used {used:.3} s of CPU in {wall:.3} s, expected {expected:.3} s"
        );
        assert!(paused > Duration::from_secs(7), "{paused:?}");
    }

    /// CPU each of `plugins` spinning plugins gets in 10 s of wall-clock time, all paced by one
    /// host; each runs on its own core, 1 ms at a time, pausing when told to.
    fn spin_together(plugins: usize, host: &PacedPlugins) -> Vec<f64> {
        let start = Instant::now();
        let end = start + Duration::from_secs(10);
        let tick = Duration::from_millis(1);
        let mut shares: Vec<CpuShare> = (0..plugins)
            .map(|_| {
                let mut share = CpuShare::new(0.25, Duration::from_millis(100), host.clone());
                share.refilled_at = start;
                share
            })
            .collect();
        let mut clocks = vec![start; plugins];
        let mut ran = vec![0.0; plugins];
        // Always step the plugin furthest behind, so the shared count is the one at that moment.
        while let Some(i) = (0..plugins)
            .filter(|i| clocks[*i] < end)
            .min_by_key(|i| clocks[*i])
        {
            clocks[i] += tick;
            ran[i] += tick.as_secs_f64();
            shares[i].owe(tick);
            if let Some(pause) = shares[i].settle(clocks[i]) {
                clocks[i] += pause;
            }
        }
        ran
    }

    #[test]
    fn spinning_plugins_share_the_paced_cores_between_them() {
        let host = PacedPlugins::new(0.25);
        let alone = spin_together(1, &host);
        assert!((alone[0] - (0.1 + 0.25 * 10.0)).abs() < 0.02, "{alone:?}");
        assert_eq!(host.count(), 0, "a dropped bucket leaves the count");
        for plugins in [2, 4] {
            let ran = spin_together(plugins, &host);
            let total: f64 = ran.iter().sum();
            // Their bursts, then a quarter of a core between them: a little more while the last
            // of them has not yet spent its burst (the others' shares are larger until then).
            // Without the host-wide share each would get a quarter: 2.6 s each.
            let expected = 0.1 * plugins as f64 + 0.25 * 10.0;
            assert!(
                (total - expected).abs() < 0.05 * expected,
                "{plugins} spinners used {total:.3} s of CPU in 10 s, expected {expected:.3}: {ran:?}"
            );
            let (least, most) = ran
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            assert!(most - least < 0.01 * most, "an unfair split: {ran:?}");
            assert_eq!(host.count(), 0);
        }
    }

    #[test]
    fn a_plugin_that_mostly_waits_is_never_paused() {
        let start = Instant::now();
        let mut share = CpuShare::new(0.25, Duration::from_millis(100), PacedPlugins::new(1.0));
        share.refilled_at = start;
        // 2 ms of work, then 20 ms waiting on its process: 10 % of a core.
        let mut now = start;
        for _ in 0..1_000 {
            now += Duration::from_millis(20);
            share.settle(now);
            now += Duration::from_millis(2);
            share.owe(Duration::from_millis(2));
            assert_eq!(share.settle(now), None);
        }
    }

    #[test]
    fn a_full_share_never_pauses() {
        let start = Instant::now();
        let mut share = CpuShare::new(1.0, Duration::ZERO, PacedPlugins::new(1.0));
        share.owe(Duration::from_secs(5));
        assert_eq!(share.settle(start), None);
    }
}
