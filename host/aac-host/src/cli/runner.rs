//! Runner mode: `aac-host --plugin PATH --manager-url URL --run-id ID` works on one run;
//! `--max-runs N` instead claims queued runs, up to N at once (pool mode).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::output;
use super::profile_args::ProfileArgs;
use crate::config::parse_duration;
use crate::plugin::PluginHost;
use crate::runner::status_server::StatusServer;
use crate::runner::{Profiles, RunMode, Runner, RunnerConfig, Shutdown};
use crate::sandbox::NetworkMode;
use crate::sandbox::docker::DockerDriver;

/// Exit code when the run could not be claimed (another runner holds it, or it ended).
pub const EXIT_NOT_CLAIMED: u8 = 4;
/// Exit code when the run was given back unfinished (drain, lost lease): another attempt goes on.
pub const EXIT_RELEASED: u8 = 5;
/// Exit code after a second signal (the turns were killed, the runs given back).
pub const EXIT_ABORTED: u8 = 130;
/// After the second signal, how long the runner may take to stop its turns, give its runs back
/// and remove its containers before it removes them itself and exits.
const ABORT_BOUND: Duration = Duration::from_secs(20);

#[derive(clap::Args, Debug)]
pub struct RunnerArgs {
    #[command(flatten)]
    pub(super) profile: ProfileArgs,
    /// The run to work on.
    #[arg(long, conflicts_with = "max_runs")]
    run_id: Option<String>,
    /// Pool mode: claim queued runs and work on up to N at once.
    #[arg(long)]
    max_runs: Option<usize>,
    /// Run the queued commands, then end the run (pool mode: exit once no run is queued).
    #[arg(long)]
    one_shot: bool,
    /// End a run when no command arrived for this long (default: the profile's, else 15m).
    #[arg(long, value_parser = duration)]
    idle_timeout: Option<Duration>,
    /// Lease length asked for; heartbeats every third of it.
    #[arg(long, value_parser = duration, default_value = "60s")]
    lease: Duration,
    /// A label this runner offers, `KEY=VALUE` (repeat for more): runs created with
    /// `--require KEY=VALUE` are claimed only by runners with every label they require.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::values::label)]
    labels: Vec<(String, String)>,
    /// This runner's id (on the manager and on its containers).
    #[arg(long, env = "AAC_RUNNER_ID")]
    runner_id: Option<String>,
    /// Where run workspaces are created; a relative path is resolved against the current directory.
    #[arg(long, value_parser = super::values::directory)]
    workspace_root: Option<PathBuf>,
    /// Keep each run's workspace (and its results' shadow repository) after the run ended;
    /// by default it is removed once the run's status and results are stored.
    #[arg(long)]
    keep_workspaces: bool,
    /// Most bytes (diffs and file contents) one command's result stores, e.g. `256MiB`; past
    /// it the result is cut and a `result.truncated` event says so.
    #[arg(long, value_parser = crate::config::parse_size)]
    result_bytes: Option<u64>,
    /// The bundle materializer (.wasm) for runs that carry a bundle, when the config file has
    /// no `[bundles]` table (which is used otherwise).
    #[arg(long)]
    bundle_plugin: Option<PathBuf>,
    /// Quiet progress; the report as JSON.
    #[arg(long)]
    json: bool,
    /// After the first SIGTERM, how long running turns may take to finish before they are
    /// cancelled as by a second signal (e.g. `10m`; default: as long as they take). Match the
    /// service manager's stop timeout to it plus 30 s (systemd TimeoutStopSec, Kubernetes
    /// terminationGracePeriodSeconds).
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    drain_timeout: Option<Duration>,
    /// Serve `/healthz` and `/readyz` (registered, manager reachable; runs held and warm-pool
    /// fill as JSON) on this address, e.g. `127.0.0.1:9464`.
    #[arg(long, env = "AAC_STATUS_LISTEN")]
    status_listen: Option<std::net::SocketAddr>,
}

/// A duration flag (`90s`, `15m`…).
pub(crate) fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    duration(text)
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|err| err.to_string())
}

impl RunnerArgs {
    /// Whether runner mode was asked for at all (a manager URL, a run or pool mode).
    pub fn wanted(&self, global: &super::Global) -> bool {
        global.manager_url.is_some() || self.names_work()
    }

    /// Whether a run or pool mode was named (a URL alone may come from the environment).
    pub fn names_work(&self) -> bool {
        self.run_id.is_some() || self.max_runs.is_some()
    }
}

pub async fn run(
    host: Arc<PluginHost>,
    args: RunnerArgs,
    global: &super::Global,
) -> Result<ExitCode> {
    let Some(url) = global.manager_url.clone() else {
        bail!("runner mode needs --manager-url (or AAC_MANAGER_URL)");
    };
    if args.run_id.is_none() && args.max_runs.is_none() {
        bail!("give --run-id ID (one run) or --max-runs N (pool mode)");
    }
    let profiles = args.profile.profiles()?;
    // A plugin named on the command line is checked and compiled before any run is claimed, so a
    // bad file never costs a claimed run.
    let mut loaded = None;
    if let Profiles::Fixed(profile) = &profiles {
        if !args.json && std::io::stderr().is_terminal() && !host.is_cached(&profile.plugin) {
            eprintln!(
                "compiling {} (cached for next time)…",
                profile.plugin.display()
            );
        }
        let plugin = host
            .load_backend_checked(&profile.plugin, &profile.integrity)
            .await?;
        loaded = Some((profile.clone(), plugin));
    }
    let client = super::connect::client(global, &url, None)?;
    let runner_id = args
        .runner_id
        .clone()
        .unwrap_or_else(|| format!("rnr_{}", uuid::Uuid::new_v4().simple()));
    let driver = DockerDriver::connect()
        .await?
        .with_runner_id(runner_id.clone())
        .with_progress(!args.json);
    let reaped = driver.reap_orphans(&runner_id).await?;
    if reaped > 0 {
        tracing::info!(reaped, "removed sandboxes left behind by a crashed host");
    }
    // Serving a queue, egress networks are made ready ahead of the runs that need them.
    let ready_networks = match (&profiles, args.max_runs) {
        (_, None) => 0,
        (Profiles::Config(config), Some(_)) => config.ready_egress_networks(),
        (Profiles::Fixed(profile), Some(_)) if profile.network == NetworkMode::Egress => {
            crate::config::DEFAULT_READY_EGRESS_NETWORKS
        }
        (Profiles::Fixed(_), Some(_)) => 0,
    };
    let mut driver = driver.with_ready_egress_networks(ready_networks);
    if let Profiles::Config(config) = &profiles
        && let Some(count) = config.concurrent_starts
    {
        driver = driver.with_concurrent_starts(count);
    }

    if args.lease < crate::runner::lease::MIN_LEASE {
        bail!(
            "--lease {:?} is too short: at least {:?} (the turn must be stopped within the lease)",
            args.lease,
            crate::runner::lease::MIN_LEASE
        );
    }
    let mut config = RunnerConfig::new(runner_id);
    config.lease = args.lease;
    config.idle_timeout = args.idle_timeout;
    config.labels = args.labels.iter().cloned().collect();
    config.mode = if args.one_shot {
        RunMode::OneShot
    } else {
        RunMode::UntilIdle
    };
    if let Some(root) = &args.workspace_root {
        config.workspace_root = root.clone();
    }
    config.keep_workspaces = args.keep_workspaces;
    if let Some(bytes) = args.result_bytes {
        config.result_bytes = bytes;
    }
    let shutdown = Shutdown::new();
    shutdown
        .listen_for_signals(args.drain_timeout)
        .context("could not listen for signals")?;
    let driver = Arc::new(driver);
    let mut runner =
        Runner::new(client, host, driver.clone(), profiles, config).with_shutdown(shutdown.clone());
    if let Some((profile, plugin)) = loaded {
        runner = runner.with_plugin(&profile, plugin);
    }
    let bundles = match &args.bundle_plugin {
        Some(plugin) => Some(crate::config::BundleSettings::for_plugin(plugin.clone())),
        None if args.profile.config.is_file() => {
            crate::config::HostConfig::load(&args.profile.config)?.bundles
        }
        None => None,
    };
    runner = runner.with_bundles(bundles);
    let runner = Arc::new(runner);
    let status_server = match args.status_listen {
        Some(addr) => Some(StatusServer::start(addr, runner.clone()).await?),
        None => None,
    };
    let work = async {
        let code = work(&runner, &args).await;
        driver.shutdown_egress().await;
        code
    };
    let code = tokio::select! {
        code = work => code,
        () = abort_deadline(&shutdown) => {
            tracing::warn!(bound = ?ABORT_BOUND, "the runner did not stop in time; removing its containers");
            if let Err(err) = driver.remove_own().await {
                tracing::warn!(error = %format!("{err:#}"), "could not remove every container");
            }
            Ok(ExitCode::from(EXIT_ABORTED))
        }
    };
    if let Some(server) = status_server {
        server.stop().await;
    }
    code
}

/// Resolves [`ABORT_BOUND`] after the second signal.
async fn abort_deadline(shutdown: &Shutdown) {
    shutdown.aborting().cancelled().await;
    tokio::time::sleep(ABORT_BOUND).await;
}

/// Registers, then works on the one run or serves the queue; the process's exit code.
async fn work(runner: &Arc<Runner>, args: &RunnerArgs) -> Result<ExitCode> {
    let shutdown = runner.shutdown().clone();
    // A manager that cannot be reached must not hold a signalled runner: stop on the first one.
    tokio::select! {
        registered = runner.register() => registered?,
        () = shutdown.draining().cancelled() => {
            eprintln!("error: shut down before the runner could register");
            return Ok(ExitCode::from(EXIT_ABORTED));
        }
    }
    if let Some(run_id) = &args.run_id {
        return match runner.run(run_id).await {
            Ok(report) => {
                output::print_run_report(&report, args.json);
                Ok(if shutdown.aborting().is_cancelled() {
                    ExitCode::from(EXIT_ABORTED)
                } else if report.is_released() {
                    ExitCode::from(EXIT_RELEASED)
                } else {
                    output::exit_code(report.status())
                })
            }
            Err(err) => {
                eprintln!("error: {err}");
                Ok(ExitCode::from(if err.is_conflict() {
                    EXIT_NOT_CLAIMED
                } else if shutdown.draining().is_cancelled() {
                    EXIT_ABORTED
                } else {
                    2
                }))
            }
        };
    }
    tokio::select! {
        prewarmed = runner.prewarm(args.json) => prewarmed?,
        () = shutdown.draining().cancelled() => {}
    }
    let report = runner.serve(args.max_runs.unwrap_or(1)).await?;
    for run in &report.runs {
        output::print_run_report(run, args.json);
    }
    output::print_unserved(&report.unserved, args.json);
    // Runs this runner claimed but could not work on (its sandbox, image or host failed) make the
    // exit non-zero, as runs it refused do.
    let not_worked = report
        .runs
        .iter()
        .filter(|run| run.failure_kind().is_some_and(host_could_not_work))
        .count();
    if not_worked > 0 {
        eprintln!(
            "error: {not_worked} of {} claimed run(s) could not be worked on (see their failure kinds)",
            report.runs.len()
        );
    }
    Ok(if shutdown.aborting().is_cancelled() {
        ExitCode::from(EXIT_ABORTED)
    } else if !report.refused.is_empty() || not_worked > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Failures of this host rather than of the agent: the runner could not work on the run.
fn host_could_not_work(kind: crate::outcome::FailureKind) -> bool {
    use crate::outcome::FailureKind;
    matches!(
        kind,
        FailureKind::SandboxLost | FailureKind::ImageUnavailable | FailureKind::HostError
    )
}
