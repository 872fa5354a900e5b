fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    aac_host::cli::main()
}

/// glibc gives threads that allocate at once arenas of their own, up to eight per core, and memory
/// freed in an arena stays with it. The host's bursts (a flood of output through the event
/// pipeline, batches of a MiB) left several arenas each holding tens of MiB nobody used: two
/// arenas bring a 50 MB turn's peak RSS from ~63 to ~53 MiB (docs/benchmarks.md). An operator's
/// own `MALLOC_ARENA_MAX` is left alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists; mallopt only sets
        // a tunable of the allocator.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
