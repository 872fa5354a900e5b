//! Pool mode: one runner process claims queued runs and works on many at once, with warm
//! sandbox pools per runtime so each run starts on a ready container.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinSet;
use tracing::{Instrument, info, warn};

use super::profile::{Profiles, RunProfile};
use super::session::sandbox_spec;
use super::{RunMode, RunReport, Runner, StartError};
use crate::manager::ClientError;
use crate::manager::protocol::RunStatus;
use crate::sandbox::pool::WarmPool;

/// What a pool-mode runner did.
#[derive(Debug, Default)]
pub struct ServeReport {
    pub runs: Vec<RunReport>,
    /// Runs claimed but not worked on (failed first heartbeat), with why.
    pub refused: Vec<String>,
    /// Backend profiles of queued runs this runner has no runtime for, with how many runs each
    /// (as last seen).
    pub unserved: BTreeMap<String, usize>,
}

/// How often a runner with nothing to claim looks for queued runs it cannot serve.
const UNSERVED_CHECK_EVERY: Duration = Duration::from_secs(60);

impl Runner {
    /// The warm pool of `profile`, started on first use; `None` when it has none.
    pub(super) async fn pool_for(&self, profile: &RunProfile) -> Option<Arc<WarmPool>> {
        if profile.warm_pool == 0 || self.config.workspace.is_some() {
            return None;
        }
        let key = format!("{}|{}", profile.runtime, profile.image);
        let mut pools = self.pools.lock().await;
        let pool = pools.entry(key).or_insert_with(|| {
            let template = sandbox_spec(profile, PathBuf::new());
            WarmPool::start(
                self.driver.clone(),
                template,
                self.config.workspace_root.join("pool"),
                profile.warm_pool as usize,
            )
        });
        Some(pool.clone())
    }

    /// Starts the warm pools of every runtime that has one and waits until they are full,
    /// showing progress on a terminal unless `quiet`.
    pub async fn prewarm(&self, quiet: bool) -> anyhow::Result<()> {
        let Profiles::Config(config) = &self.profiles else {
            return Ok(());
        };
        let tty = !quiet && std::io::stderr().is_terminal();
        for name in config.runtimes.keys() {
            let profile = RunProfile::from_config(config, name)?;
            let Some(pool) = self.pool_for(&profile).await else {
                continue;
            };
            let size = profile.warm_pool as usize;
            if tty {
                while pool.ready_count() < size {
                    eprint!(
                        "\rwarming {}: {}/{size} sandboxes ready",
                        profile.runtime,
                        pool.ready_count()
                    );
                    let _ =
                        tokio::time::timeout(Duration::from_millis(250), pool.wait_full()).await;
                }
                eprintln!(
                    "\rwarming {}: {size}/{size} sandboxes ready",
                    profile.runtime
                );
            } else {
                pool.wait_full().await;
            }
            info!(runtime = %profile.runtime, size, "warm pool full");
        }
        Ok(())
    }

    /// Pool mode: claims queued runs and works on up to `max_runs` at once, until the shutdown
    /// drains — or, in one-shot mode, until no run is queued and every claimed run ended.
    pub async fn serve(self: &Arc<Self>, max_runs: usize) -> Result<ServeReport, ClientError> {
        let span = tracing::info_span!("serve", runner = %self.config.runner_id);
        async {
            let mut report = ServeReport::default();
            let mut tasks: JoinSet<Result<RunReport, StartError>> = JoinSet::new();
            let backends = self.profiles.backends();
            let max_runs = max_runs.max(1);
            self.status.set_max_runs(max_runs);
            let mut unserved_checked: Option<tokio::time::Instant> = None;
            loop {
                let mut queue_empty = false;
                while tasks.len() < max_runs && !self.shutdown.draining().is_cancelled() {
                    let claimed_at = tokio::time::Instant::now();
                    let claim = self.client.claim_next(
                        &self.config.runner_id,
                        self.config.lease,
                        backends.clone(),
                    );
                    // An unreachable manager must not hold a draining runner in the claim's retries.
                    let claimed = tokio::select! {
                        claimed = claim => claimed,
                        () = self.shutdown.draining().cancelled() => break,
                    };
                    match &claimed {
                        Err(err) if err.status().is_none_or(|s| s >= 500) => {
                            self.status.manager_failed(err)
                        }
                        _ => self.status.manager_answered(),
                    }
                    let result = match &claimed {
                        Ok(Some(_)) => "claimed",
                        Ok(None) => "empty",
                        Err(_) => "error",
                    };
                    self.metrics.claim(result, claimed_at.into_std());
                    match claimed {
                        Ok(Some(lease)) => {
                            let runner = self.clone();
                            tasks.spawn(async move { runner.work(lease, claimed_at).await });
                        }
                        Ok(None) => {
                            queue_empty = true;
                            break;
                        }
                        Err(
                            err @ (ClientError::Unavailable { .. } | ClientError::Status { .. }),
                        ) => {
                            warn!(error = %err, "could not claim a run; trying again later");
                            break;
                        }
                        Err(err) => return Err(err),
                    }
                }
                let done = self.shutdown.draining().is_cancelled()
                    || (self.config.mode == RunMode::OneShot && queue_empty);
                let check_due =
                    unserved_checked.is_none_or(|at| at.elapsed() >= UNSERVED_CHECK_EVERY);
                if queue_empty
                    && let Some(backends) = &backends
                    && (check_due || (done && tasks.is_empty()))
                {
                    unserved_checked = Some(tokio::time::Instant::now());
                    self.check_unserved(backends, &mut report.unserved).await;
                }
                if done && tasks.is_empty() {
                    break;
                }
                // Look for new runs about every second (jittered), sooner when a slot frees up.
                let pause = Duration::from_millis(rand::rng().random_range(500..1000));
                tokio::select! {
                    Some(joined) = tasks.join_next() => record(&mut report, joined),
                    () = tokio::time::sleep(pause), if !done => {}
                    () = self.shutdown.draining().cancelled(), if !done => {}
                }
            }
            self.close_pools().await;
            Ok(report)
        }
        .instrument(span)
        .await
    }
}

impl Runner {
    /// Looks for queued runs whose backend profile none of `backends` is, and says which when that
    /// changed: such runs stay queued until a runner with their runtime comes.
    async fn check_unserved(&self, backends: &[String], unserved: &mut BTreeMap<String, usize>) {
        let queued = match self.client.list_runs(Some(RunStatus::Queued)).await {
            Ok(queued) => queued,
            Err(err) => {
                warn!(error = %err, "could not list queued runs");
                return;
            }
        };
        let mut found: BTreeMap<String, usize> = BTreeMap::new();
        for run in queued
            .into_iter()
            .filter(|run| !backends.contains(&run.backend))
        {
            *found.entry(run.backend).or_default() += 1;
        }
        let changed = found.keys().ne(unserved.keys());
        if changed && !found.is_empty() {
            let list = describe_unserved(&found);
            warn!(
                unserved = %list,
                serves = %backends.join(", "),
                "queued runs need backends this runner has no runtime for"
            );
        }
        *unserved = found;
    }
}

/// `codex@0.170 (2 runs), gemini (1 run)`.
pub fn describe_unserved(unserved: &BTreeMap<String, usize>) -> String {
    unserved
        .iter()
        .map(|(backend, n)| format!("{backend} ({n} run{})", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

fn record(
    report: &mut ServeReport,
    joined: Result<Result<RunReport, StartError>, tokio::task::JoinError>,
) {
    match joined {
        Ok(Ok(run)) => report.runs.push(run),
        Ok(Err(err)) => {
            warn!(error = %err, "a claimed run was not worked on");
            report.refused.push(err.to_string());
        }
        Err(err) => {
            warn!(error = %err, "a run's task failed");
            report.refused.push(err.to_string());
        }
    }
}
