//! `cargo xtask …`: everything set-up needs, so a fresh machine runs the demo or the tests with one
//! command each.
//!
//! * `demo`    builds the host and the shell plugin while it makes sure Docker runs and builds the
//!   sandbox image, then runs a turn;
//! * `test`    the same set-up (plus the JS/Python examples when node/python3 are installed),
//!   checked on a fresh dockerd too, then the whole test suite;
//! * `bench`   the benchmarks (results go into docs/benchmarks.md by hand);
//! * `plugins` builds the first-party plugins into target/plugins/ (`--polyglot`: also the
//!   JavaScript and Python example backends of examples/);
//! * `image`   builds the local sandbox image with `docker import`;
//! * `images`  that image plus the agent CLI images (real Codex and Claude Code CLIs from npm);
//! * `docker`  makes sure a Docker engine answers (installs and starts one when root) and registers
//!   gVisor's `runsc` with it when it can (`test` does that too);
//! * `fresh-docker` only the fresh-engine check of `test` (a second dockerd, started and stopped).

mod agent_images;
mod docker;
mod fresh_docker;
mod gvisor;
mod host_image;
mod image;
mod plugins;
mod polyglot;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> std::process::ExitCode {
    match dispatch() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    match task {
        "demo" => demo(rest),
        "test" => test(rest),
        "bench" => bench(rest),
        "plugins" => {
            plugins::build_all(&plugins::FIRST_PARTY)?;
            if rest.iter().any(|arg| arg == "--polyglot") {
                polyglot::build()?;
            }
            Ok(())
        }
        "image" => {
            docker::ensure_engine()?;
            image::build_busybox()
        }
        "images" => {
            docker::ensure_engine()?;
            image::build_busybox()?;
            agent_images::build_all()
        }
        "host-image" => {
            docker::ensure_engine()?;
            host_image::build(rest)
        }
        "docker" => {
            docker::ensure_engine()?;
            gvisor::ensure_runsc();
            Ok(())
        }
        "fresh-docker" => {
            let plugin_dir = set_up(&plugins::FIRST_PARTY)?;
            fresh_docker::check(&plugin_dir)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <demo|test|bench|plugins|image|images|host-image|docker|fresh-docker>"
            );
            Ok(())
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn run(command: &mut Command) -> Result<()> {
    eprintln!("$ {}", display(command));
    let status = command
        .status()
        .with_context(|| format!("could not run {}", display(command)))?;
    if !status.success() {
        bail!("{} failed with {status}", display(command));
    }
    Ok(())
}

fn display(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

/// Set-up shared by demo and tests: engine, image, plugins.
fn set_up(plugins: &[&str]) -> Result<PathBuf> {
    docker::ensure_engine()?;
    image::build_busybox()?;
    plugins::build_all(plugins)
}

fn demo(args: &[String]) -> Result<()> {
    // On a fresh machine installing Docker waits on the network and the disk while compiling
    // needs both cores: do them side by side. The thread is always joined, so an apt-get is
    // never cut off half-way by a failed build.
    let engine =
        std::thread::spawn(|| docker::ensure_engine().and_then(|()| image::build_busybox()));
    let built = build_demo();
    let engine = engine
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("setting up Docker panicked")));
    let plugin_dir = built?;
    engine?;
    let prompt = args.first().cloned().unwrap_or_else(|| {
        "echo \"hello from $(id -un) in $(pwd)\"; echo 'made by the shell plugin' > hello.txt; ls -l; echo 'a line on stderr' >&2".into()
    });
    let workspace = root().join("target").join("demo-workspace");
    let _ = std::fs::remove_dir_all(&workspace);
    run(Command::new(root().join("target/debug/aac-host"))
        .arg("run")
        .arg("--plugin")
        .arg(plugin_dir.join("shell.wasm"))
        .arg("--workspace")
        .arg(&workspace)
        .arg(prompt))?;
    let written = workspace.join("hello.txt");
    let content = std::fs::read_to_string(&written)
        .with_context(|| format!("the turn did not leave {} on the host", written.display()))?;
    eprintln!("host sees {}: {}", written.display(), content.trim());
    Ok(())
}

/// What the demo runs: the shell plugin and the host, in the dev profile the tests use (one build
/// of the wasmtime stack serves the demo and `cargo xtask test`). Side by side: the plugin's build
/// (LTO, one codegen unit) mostly keeps one core busy, and cargo locks each profile's directory
/// apart, so it hides inside the host's longer build.
fn build_demo() -> Result<PathBuf> {
    let plugin = std::thread::spawn(|| plugins::build_all(&["shell"]));
    let host = run(cargo().args(["build", "-p", "aac-host"]));
    let plugin_dir = plugin
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("building the shell plugin panicked")));
    host?;
    plugin_dir
}

fn test(args: &[String]) -> Result<()> {
    let plugin_dir = set_up(&plugins::ALL)?;
    gvisor::ensure_runsc();
    polyglot::build_available()?;
    agent_images::build_all()?;
    fresh_docker::check(&plugin_dir)?;
    run(cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(args)
        .env("AAC_PLUGIN_DIR", &plugin_dir))
}

fn bench(args: &[String]) -> Result<()> {
    let mut plugins = plugins::FIRST_PARTY.to_vec();
    plugins.push("test-codex-parse");
    let plugin_dir = set_up(&plugins)?;
    polyglot::build_available()?;
    agent_images::build_all()?;
    // The pool-mode benchmark runs the real binary of the bench profile.
    run(cargo().args(["build", "--release", "-p", "aac-host"]))?;
    run(cargo()
        .args(["bench", "-p", "aac-tests"])
        .args(args)
        .env("AAC_PLUGIN_DIR", &plugin_dir))
}
