//! The data of one plugin [`Store`](wasmtime::Store): everything a session's host calls can reach.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::PluginIdentity;
use super::capability::declared::Capabilities;
use super::capability::{
    archive::ArchiveCapability, events::EventsCapability, http::HttpCapability, log::LogCapability,
    modes::ModesCapability, sandbox::SandboxCapability,
};
use super::limits::{CpuBudget, MemoryLimiter, PacedPlugins, PluginLimits, Tick};
use super::stderr_tail::StderrTail;

/// Bytes of the plugin's stderr kept to explain a crash (a Rust panic prints its message there):
/// the last ones written.
const STDERR_CAPTURE: usize = 64 << 10;

/// The Store data of a plugin of world `W`: what every world's host calls reach (WASI, wasi:http,
/// log, limits), plus `world`, the capabilities of that world alone.
pub struct SessionState<W> {
    pub identity: Arc<PluginIdentity>,
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub stderr: StderrTail,
    pub limits: PluginLimits,
    pub memory: MemoryLimiter,
    pub cpu: CpuBudget,
    pub log: LogCapability,
    /// wasi:http with the effective allowlist; every request refused unless granted.
    pub http: HttpCapability,
    pub world: W,
}

/// What only a backend session's host calls reach.
pub struct BackendWorld {
    pub events: EventsCapability,
    pub sandbox: SandboxCapability,
}

/// What only a materializer's host calls reach: the local archive of its bundle and the modes of
/// the files it writes.
pub struct MaterializerWorld {
    pub archive: ArchiveCapability,
    pub modes: ModesCapability,
}

/// What the failure classification asks of a world.
pub trait WorldState: Send + 'static {
    /// Why the plugin went past an event limit, when it did (only backends emit events).
    fn event_limit_exceeded(&self) -> Option<&str> {
        None
    }
}

impl WorldState for BackendWorld {
    fn event_limit_exceeded(&self) -> Option<&str> {
        self.events.exceeded.as_deref()
    }
}

impl WorldState for MaterializerWorld {}

impl<W: WorldState> SessionState<W> {
    pub fn new(
        identity: Arc<PluginIdentity>,
        limits: &PluginLimits,
        paced: PacedPlugins,
        log: LogCapability,
        world: W,
    ) -> Self {
        let stderr = StderrTail::new(STDERR_CAPTURE);
        let memory = MemoryLimiter::new(limits.memory_bytes, stderr.clone());
        let wasi = denied_wasi(&stderr).build();
        let http = HttpCapability::deny_all(identity.to_string());
        Self {
            identity,
            table: ResourceTable::new(),
            wasi,
            stderr,
            limits: *limits,
            memory,
            cpu: CpuBudget::new(limits, paced),
            log,
            http,
            world,
        }
    }

    /// Grants `effective` (declared ∧ granted): its host environment variables and HTTP hosts.
    pub fn grant(&mut self, effective: &Capabilities) {
        let mut wasi = denied_wasi(&self.stderr);
        for var in &effective.env {
            if let Some(value) = std::env::var_os(var).and_then(|v| v.into_string().ok()) {
                wasi.env(var, value);
            }
        }
        self.wasi = wasi.build();
        self.http = HttpCapability::new(self.identity.to_string(), effective.clone());
    }

    /// The tail of what the plugin wrote to stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        tail_lines(&self.stderr.contents())
    }

    /// A call other than a turn starts. Limits that fired in an earlier call (a refused memory
    /// grow the plugin handled) do not explain how this one ends.
    pub fn start_call(&mut self) {
        self.cpu.start_call();
        self.memory.start_call();
    }

    /// A `run-turn` call starts.
    pub fn start_turn(&mut self) {
        self.cpu.start_turn();
        self.memory.start_call();
    }
}

/// The last lines of what a plugin wrote to stderr.
pub fn tail_lines(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// WASI granting nothing: no env, no args, no preopened directories, no sockets. The plugin's
/// stderr is captured (bounded) so a panic message can be shown.
pub fn denied_wasi(stderr: &StderrTail) -> WasiCtxBuilder {
    let mut builder = WasiCtx::builder();
    builder
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder
}

impl<W: WorldState> WasiView for SessionState<W> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A Store for `state`: its memory limiter, the call hook that stops the CPU budget while the host
/// runs (every host call alike: sandbox, events, WASI sleeps and polls), and the epoch callback
/// that charges the budget, traps past it, and yields on every tick so one busy plugin cannot
/// starve the other sessions — and pauses a plugin past its share of a core (`cpu_share`, after
/// `cpu_burst`), so spinning plugins leave the cores to the runner and to healthy runs.
pub fn limited_store<W: WorldState>(
    engine: &wasmtime::Engine,
    state: SessionState<W>,
) -> wasmtime::Store<SessionState<W>> {
    let mut store = wasmtime::Store::new(engine, state);
    store.limiter(|state| &mut state.memory);
    store.call_hook(|mut ctx, hook| {
        let cpu = &mut ctx.data_mut().cpu;
        match hook {
            wasmtime::CallHook::CallingHost | wasmtime::CallHook::ReturningFromWasm => cpu.pause(),
            wasmtime::CallHook::ReturningFromHost | wasmtime::CallHook::CallingWasm => cpu.resume(),
        }
        Ok(())
    });
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        Ok(match ctx.data_mut().cpu.tick() {
            Tick::Exceeded => wasmtime::UpdateDeadline::Interrupt,
            Tick::Continue => wasmtime::UpdateDeadline::Yield(1),
            Tick::Pause(pause) => {
                wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(pause)))
            }
        })
    });
    store
}
