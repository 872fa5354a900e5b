//! The `aac-host` command line.

mod config_check;
mod connect;
mod doctor;
#[cfg(test)]
mod help_check;
mod logging;
mod manager;
mod manager_auth;
mod output;
mod plugin_build;
mod plugin_new;
mod profile_args;
mod results;
mod run;
mod runner;
mod runners;
mod runs;
mod toolchain;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::plugin::{ArtifactCache, PluginHost, PluginHostConfig};

#[derive(Parser, Debug)]
#[command(
    name = "aac-host",
    version,
    about = "Host runner for AI coding-agent runs",
    long_about = "Host runner for AI coding-agent runs.\n\n\
        aac-host runner --plugin codex.wasm --manager-url URL --run-id ID works on one run; \
        --max-runs N claims queued runs and works on up to N at once. (The same flags without \
        the `runner` subcommand still work, with a deprecation warning.)"
)]
struct Cli {
    /// The plugin cache options before a subcommand (`aac-host --no-cache run …`), as earlier
    /// versions took them; hidden: each command that loads plugins offers its own.
    #[command(flatten)]
    cache: HiddenCacheArgs,

    #[command(flatten)]
    global: Global,

    /// How log lines on stderr look (the filter is `AAC_LOG`, default `warn,plugin=info,access=info,manager=info`).
    #[arg(
        long,
        global = true,
        env = "AAC_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    runner: runner::RunnerArgs,
}

/// Where compiled plugins are cached: offered by the commands that load plugins.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CacheArgs {
    /// Directory for compiled plugin artifacts (default: $AAC_CACHE_DIR or ~/.cache/aac-host).
    #[arg(long, env = "AAC_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the compiled-plugin cache.
    #[arg(long)]
    no_cache: bool,
}

/// [`CacheArgs`] before the subcommand: accepted, not shown.
#[derive(clap::Args, Debug, Clone, Default)]
struct HiddenCacheArgs {
    /// Directory for compiled plugin artifacts (put it after the subcommand).
    #[arg(
        long = "cache-dir",
        id = "top_cache_dir",
        hide = true,
        value_name = "DIR"
    )]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the compiled-plugin cache (put it after the subcommand).
    #[arg(long = "no-cache", id = "top_no_cache", hide = true)]
    no_cache: bool,
}

impl HiddenCacheArgs {
    /// The cache directory: the subcommand's options over these, `None` when either says
    /// `--no-cache`.
    fn cache_dir(&self, command: &CacheArgs) -> Option<PathBuf> {
        if self.no_cache || command.no_cache {
            return None;
        }
        command
            .cache_dir
            .clone()
            .or_else(|| self.cache_dir.clone())
            .or_else(ArtifactCache::default_dir)
    }
}

/// A command's own arguments and the plugin cache options.
#[derive(clap::Args, Debug)]
pub struct WithCache<T: clap::Args> {
    #[command(flatten)]
    cache: CacheArgs,
    #[command(flatten)]
    args: T,
}

/// Options every subcommand that talks to a manager shares; accepted before or after the
/// subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// The manager's base URL (runner, runs, runners; default for runs and runners:
    /// http://127.0.0.1:7420).
    #[arg(long, global = true, env = "AAC_MANAGER_URL")]
    pub manager_url: Option<String>,
    /// File holding the bearer token clients and runners present (else --token or
    /// AAC_MANAGER_TOKEN); for `manager`, the tokens it accepts, one `role:token` line each (role
    /// runner, client or admin), re-read on SIGHUP.
    #[arg(long, global = true, value_name = "FILE", env = "AAC_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed an https:// manager's certificate, trusted besides the
    /// public roots (runner, runs, runners).
    #[arg(long, global = true, value_name = "FILE", env = "AAC_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Work on runs from a manager: one run (--run-id) or a pool (--max-runs N).
    Runner(Box<WithCache<runner::RunnerArgs>>),
    /// Run one agent turn locally: a plugin, a Docker sandbox and a workspace.
    Run(Box<WithCache<run::RunArgs>>),
    /// Run the embedded manager: the whole v1 protocol over a durable store.
    Manager(manager::ManagerArgs),
    /// Create, enqueue, cancel, inspect and follow runs on a manager.
    Runs(runs::RunsArgs),
    /// List the runners registered with a manager.
    Runners(runners::RunnersArgs),
    /// Check a config file without running anything (plugins, pins, images).
    Config(config_check::ConfigArgs),
    /// Check this host: Docker, cgroups, runtimes, images and plugins of the profiles, the cache
    /// directory, iptables for egress, the manager and token. Exit 1 when a check fails.
    Doctor(WithCache<doctor::DoctorArgs>),
    /// Print a shell completion script: `aac-host completions bash > /etc/bash_completion.d/aac-host`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Show a plugin's world, WIT version, imports, exports, size, cache state and capabilities
    /// (declared; with --config also granted, effective, and the integrity checks).
    Inspect {
        /// The plugin file (.wasm).
        path: PathBuf,
        /// Print the inspection as JSON.
        #[arg(long)]
        json: bool,
        /// aac.toml: show what it grants the plugin and check its pin and signature.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The runtime whose grants apply (default: [bundles] for a materializer).
        #[arg(long, requires = "config")]
        runtime: Option<String>,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Run a backend against a transcript recorded with `aac-host run --record` (no Docker, no
    /// agent CLI) and compare what it emits with what the transcript says. Exit 0 when they match,
    /// 1 when they differ.
    Test {
        /// The backend plugin (.wasm).
        plugin: PathBuf,
        /// The transcript (JSON) to replay.
        #[arg(long)]
        transcript: PathBuf,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Create a backend plugin project: the source, a README and a transcript test (Rust: a crate
    /// on aac-sdk; JavaScript and Python: with the contract's WIT, built with jco/componentize-py).
    New {
        /// The plugin's name: lowercase letters, digits, `-`, `_` (the package name).
        name: String,
        /// The language: rust, js or python.
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Where to create it (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rust only: the aac-sdk crate to depend on by path (default: this binary's checkout's
        /// sdk/).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin project and print the component's path: Rust with `cargo build --target
    /// wasm32-wasip2 --release`, JavaScript (package.json) with jco 1.34.0 (needs node and npm),
    /// Python (pyproject.toml) with componentize-py 0.25.1 (needs python3 with venv).
    Build {
        /// The project directory (default: the current directory).
        dir: Option<PathBuf>,
        /// Build without network access (cargo's dependencies from its cache; jco and
        /// componentize-py already in the tools directory).
        #[arg(long)]
        offline: bool,
        /// Where jco and componentize-py are installed on first use and reused (default: tools/
        /// in the plugin cache directory, $AAC_CACHE_DIR or ~/.cache/aac-host).
        #[arg(long, env = "AAC_TOOLS_DIR", value_name = "DIR")]
        tools_dir: Option<PathBuf>,
    },
}

/// Exit codes: 0 completed, 1 failed, 3 blocked, 130 cancelled, 2 the host itself failed.
pub fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command()
        .long_version(long_version())
        .get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if cli.command.is_some()
        && let Some(flag) = top_level_runner_flag(&matches)
    {
        clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--{flag} is a runner flag and goes after `aac-host runner`, not before another \
                 subcommand (it would be ignored)\n"
            ),
        )
        .exit();
    }
    let (telemetry, traces, notes) = crate::telemetry::Telemetry::from_env();
    let tracing_on = telemetry.is_on();
    logging::init(cli.log_format, traces);
    for note in notes {
        if tracing_on {
            tracing::info!(target: "telemetry", "{note}");
        } else {
            tracing::warn!(target: "telemetry", "{note}");
        }
    }
    let code = run_dispatch(cli);
    // On every way out, SIGTERM's drain included: the last spans, within a bounded time.
    telemetry.shutdown();
    code
}

fn run_dispatch(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let top_cache = cli.cache;
    let plugin_config = |cache: &CacheArgs| PluginHostConfig {
        cache_dir: top_cache.cache_dir(cache),
        ..PluginHostConfig::default()
    };
    // Hosts that run plugins take the config file's `[limits]`.
    let plugin_host_with = |cache: &CacheArgs, limits: Option<crate::plugin::PluginLimits>| {
        let config = plugin_config(cache);
        PluginHost::new(PluginHostConfig {
            limits: limits.unwrap_or(config.limits),
            ..config
        })
    };
    let global = cli.global;
    let Some(command) = cli.command else {
        if !cli.runner.wanted(&global) {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            return Ok(ExitCode::from(2));
        }
        tracing::warn!(
            "runner flags without a subcommand are deprecated: use `aac-host runner …` (same flags)"
        );
        eprintln!(
            "warning: use `aac-host runner …`; runner flags without the subcommand are deprecated"
        );
        let limits = cli.runner.profile.host_limits()?;
        let host = plugin_host_with(&CacheArgs::default(), limits)?;
        return runner::run(host, cli.runner, &global).await;
    };
    match command {
        Command::Runner(runner) => {
            let WithCache { cache, args } = *runner;
            let limits = args.profile.host_limits()?;
            runner::run(plugin_host_with(&cache, limits)?, args, &global).await
        }
        Command::Run(run) => {
            let WithCache { cache, args } = *run;
            let limits = args.profile.host_limits()?;
            run::run(&plugin_host_with(&cache, limits)?, args).await
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "aac-host", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(args) => {
            let host = PluginHost::new(plugin_config(args.cache()))?;
            config_check::config(args, host).await
        }
        Command::Doctor(WithCache { cache, args }) => {
            doctor::doctor(args, &global, plugin_config(&cache)).await
        }
        Command::Runs(args) => runs::runs(args, &global).await,
        Command::Runners(args) => runners::runners(args, &global).await,
        Command::Manager(args) => manager::manager(args, &global).await,
        Command::Plugin {
            command:
                PluginCommand::Inspect {
                    path,
                    json,
                    config,
                    runtime,
                    cache,
                },
        } => {
            let mut inspection = PluginHost::new(plugin_config(&cache))?
                .inspect(&path)
                .await?;
            if let Some(config) = config {
                inspection = output::apply_config(inspection, &config, runtime.as_deref())?;
            }
            output::print_inspection(&inspection, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command:
                PluginCommand::Test {
                    plugin,
                    transcript,
                    cache,
                },
        } => {
            replay_test(
                &PluginHost::new(plugin_config(&cache))?,
                &plugin,
                &transcript,
            )
            .await
        }
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    lang,
                    dir,
                    sdk,
                },
        } => {
            let dir = plugin_new::new_project(&plugin_new::NewProject {
                name: &name,
                lang: &lang,
                dir: dir.as_deref(),
                sdk: sdk.as_deref(),
            })?;
            println!("{}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command:
                PluginCommand::Build {
                    dir,
                    offline,
                    tools_dir,
                },
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let tools_dir = tools_dir
                .or_else(plugin_build::default_tools_dir)
                .context("no tools directory (no HOME): pass --tools-dir DIR")?;
            let options = plugin_build::BuildOptions { offline, tools_dir };
            println!("{}", plugin_build::build(&dir, &options)?.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `aac-host plugin test`: prints each difference, or how much matched.
async fn replay_test(
    host: &std::sync::Arc<PluginHost>,
    plugin: &std::path::Path,
    transcript: &std::path::Path,
) -> Result<ExitCode> {
    let recorded = crate::replay::read_transcript(transcript)?;
    let report = crate::replay::replay(host, plugin, &recorded).await?;
    if report.matches() {
        println!(
            "ok: {} command(s), {} process(es), {} event(s) as in {}",
            recorded.commands.len(),
            recorded.processes.len(),
            report.events,
            transcript.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for difference in &report.differences {
        println!("differs: {difference}");
    }
    if report.more > 0 {
        println!("… and {} more differences", report.more);
    }
    Ok(ExitCode::from(1))
}

/// A runner flag given before a subcommand other than `runner` (`aac-host --plugin X run …`):
/// clap would parse it into the bare runner form and the subcommand would never see it.
fn top_level_runner_flag(matches: &clap::ArgMatches) -> Option<String> {
    let runner_args =
        <runner::RunnerArgs as clap::Args>::augment_args(clap::Command::new("runner"));
    runner_args
        .get_arguments()
        .filter(|arg| !arg.is_global_set())
        .find(|arg| {
            matches!(
                matches.value_source(arg.get_id().as_str()),
                Some(clap::parser::ValueSource::CommandLine)
            )
        })
        .map(|arg| arg.get_long().unwrap_or(arg.get_id().as_str()).to_owned())
}

/// `aac-host --version`: the host version, the WIT package it speaks, the wasmtime it links and
/// the git commit it was built from.
fn long_version() -> &'static str {
    use crate::plugin::bindings::{ContractVersion, WIT_PACKAGE, WIT_VERSION};
    let older: Vec<&str> = ContractVersion::ALL
        .iter()
        .map(|version| version.as_str())
        .filter(|&version| version != WIT_VERSION)
        .collect();
    let text = format!(
        "{}\nwit: {WIT_PACKAGE}@{WIT_VERSION} (also loads {})\nwasmtime: {}\ncommit: {}",
        env!("CARGO_PKG_VERSION"),
        older.join(", "),
        env!("AAC_WASMTIME_VERSION"),
        env!("AAC_GIT_COMMIT"),
    );
    // Built once per process, for clap, which keeps it for the process's life.
    Box::leak(text.into_boxed_str())
}
