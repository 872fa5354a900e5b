//! The one wasmtime [`Engine`] of a host, and the thread that drives its epochs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;
use tracing::warn;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, WasmBacktraceDetails,
};

use super::limits::PluginLimits;

/// Sessions that can be instantiated at once with the pooling allocator; past that, instantiation
/// fails with a clear error rather than exhausting memory.
const POOLED_SESSIONS: u32 = 512;

/// How often the epoch advances. CPU budgets are counted in these ticks' worth of time and a
/// running plugin yields to other sessions at least this often. Every await of a healthy session
/// (a process read, an event) waits behind busy plugins' slices on the host's few worker threads,
/// so the slice is short: at 10 ms a turn next to two spinning plugins on 2 cores took 23× its
/// time alone (docs/benchmarks.md, "A healthy turn among hostile runs").
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The engine: the pooling allocator (pre-reserved slots, copy-on-write memory images, the fastest
/// instantiation) where the address space allows it, on-demand allocation otherwise.
pub fn new_engine(limits: &PluginLimits) -> Result<Engine> {
    let mut config = base_config();
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(POOLED_SESSIONS)
        .total_core_instances(POOLED_SESSIONS * 16)
        .total_memories(POOLED_SESSIONS * 4)
        .total_tables(POOLED_SESSIONS * 4)
        .total_stacks(POOLED_SESSIONS)
        .max_core_instances_per_component(64)
        .max_memories_per_component(16)
        .max_tables_per_component(16)
        .max_memory_size(limits.memory_bytes);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(err) => {
            warn!(error = %err, "pooling allocator unavailable; falling back to on-demand allocation");
            Ok(Engine::new(&base_config())?)
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .wasm_backtrace_details(WasmBacktraceDetails::Enable)
        .max_wasm_stack(2 << 20)
        .async_stack_size(4 << 20);
    config
}

/// Increments the engine's epoch every [`EPOCH_TICK`] on its own thread until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let thread = std::thread::Builder::new()
            .name("aac-epoch-ticker".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                }
            })
            .expect("spawning the epoch ticker thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
