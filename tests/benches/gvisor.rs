//! A shell turn under gVisor vs runc (`cargo xtask bench`; issue 13 asks for the ratio): one whole
//! local turn of the shell plugin — sandbox created and started, the prompt run, the sandbox
//! removed — with `sandbox.runtime = "runsc"` against the engine's default runtime, for two prompts:
//!
//! * `true`: what a turn costs when the agent does nothing (the sandbox's start and stop dominate);
//! * `files`: 300 small files written and read back by a shell loop (system calls dominate: where
//!   gVisor's own kernel, on the ptrace platform here, costs the most).
//!
//! Skipped, with a message, when `docker info` lists no `runsc` (`cargo xtask docker` sets it up).

use std::time::Duration;

use aac_host::local::LocalTurn;
use aac_host::outcome::TerminalStatus;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;

const PROMPTS: &[(&str, &str)] = &[
    ("true", "true"),
    (
        "files",
        "for i in $(seq 1 300); do echo line-$i > f$i; done; cat f* | wc -l; rm f*",
    ),
];

fn gvisor(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let has_runsc = runtime.block_on(async {
        let info = aac_tests::docker().await.client().info().await.unwrap();
        info.runtimes.is_some_and(|r| r.contains_key("runsc"))
    });
    if !has_runsc {
        eprintln!("skipped: the Docker engine has no `runsc` runtime (`cargo xtask docker`)");
        return;
    }
    let host = aac_tests::test_host(None);
    let mut group = c.benchmark_group("shell-turn");
    group
        .sampling_mode(criterion::SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    for &(name, prompt) in PROMPTS {
        for oci_runtime in [None, Some("runsc")] {
            let id = format!("{name}/{}", oci_runtime.unwrap_or("runc"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let turn = LocalTurn {
                            oci_runtime: oci_runtime.map(Into::into),
                            ..LocalTurn::new(aac_tests::plugin("shell"), prompt)
                        };
                        let record =
                            aac_tests::local_turn(&host, turn, CancellationToken::new()).await;
                        assert_eq!(record.report.outcome.status, TerminalStatus::Completed);
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, gvisor);
criterion_main!(benches);
