//! The set-up checked on a *fresh* Docker engine too, not only on the one this machine happens to
//! have: a second dockerd with its own data root, exec root, pid file, socket and bridge (and no
//! iptables changes), started for one test file, then stopped by its pid. A freshly started dockerd
//! differs in ways that broke us before (its default bridge lists no IPAM gateway).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::docker::{has, is_root};

/// The test files run against the fresh engine: each runs real sandbox turns.
const FRESH_ENGINE_TESTS: &[&str] = &["host_service"];

/// Runs [`FRESH_ENGINE_TESTS`] against a dockerd started with an empty state.
pub fn check(plugin_dir: &Path) -> Result<()> {
    if !is_root() {
        eprintln!("xtask: not root, so no fresh dockerd: the fresh-engine check is skipped");
        return Ok(());
    }
    if !has("ip") {
        crate::run(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "iproute2"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    let engine = FreshEngine::start()?;
    let rootfs = crate::root().join("target/images/busybox-rootfs-fresh");
    crate::image::busybox_rootfs(&rootfs)?;
    crate::image::import_busybox(&rootfs, engine.docker())?;
    let mut test = crate::cargo();
    test.args(["test", "-p", "aac-tests"]);
    for name in FRESH_ENGINE_TESTS {
        test.args(["--test", name]);
    }
    test.env("DOCKER_HOST", engine.host())
        .env("AAC_PLUGIN_DIR", plugin_dir);
    crate::run(&mut test).context("the set-up does not work on a fresh Docker engine")
}

/// A dockerd of our own; dropping it stops it (by its pid) and removes its state, then its bridge.
struct FreshEngine {
    dir: PathBuf,
    daemon: Child,
    _bridge: Bridge,
}

impl FreshEngine {
    fn start() -> Result<Self> {
        let id = std::process::id();
        // Short: the socket paths under it must fit a sockaddr_un.
        let dir = PathBuf::from(format!("/tmp/aac-fresh-docker-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("daemon.json"), "{}")?;
        let subnet = free_subnet()?;
        let bridge = Bridge::create(format!("aacfresh{}", id % 100_000))?;
        let socket = format!("unix://{}", dir.join("docker.sock").display());
        let log_path = dir.join("dockerd.log");
        let log = std::fs::File::create(&log_path)?;
        let daemon = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .args(["--host", &socket])
            // A bridge with no address and a pool to pick from: dockerd gives the bridge its
            // address itself and lists no gateway, as on a machine where it starts for the first time.
            .args(["--bridge", &bridge.0])
            .arg("--default-address-pool")
            .arg(format!("base={subnet}.0/24,size=24"))
            // Leave the machine's firewall, forwarding and the other engine's rules alone.
            .args(["--iptables=false", "--ip-forward=false"])
            .args(["--containerd-namespace", "aac-fresh"])
            .args(["--containerd-plugins-namespace", "aac-fresh-plugins"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("could not start a second dockerd")?;
        let mut engine = Self {
            dir,
            daemon,
            _bridge: bridge,
        };
        eprintln!(
            "xtask: fresh dockerd pid {} on {socket} (bridge {}, pool {subnet}.0/24, log {})",
            engine.daemon.id(),
            engine._bridge.0,
            log_path.display()
        );
        let started = Instant::now();
        while !engine.answers() {
            if let Ok(Some(status)) = engine.daemon.try_wait() {
                bail!(
                    "the fresh dockerd exited with {status}; see {}",
                    log_path.display()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "the fresh dockerd did not answer within 60 s; see {}",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(engine)
    }

    /// `unix://…/docker.sock`, for `DOCKER_HOST`.
    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// A `docker` command talking to this engine.
    fn docker(&self) -> Command {
        let mut docker = Command::new("docker");
        docker.args(["--host", &self.host()]);
        docker
    }

    fn answers(&self) -> bool {
        self.docker()
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for FreshEngine {
    fn drop(&mut self) {
        let pid = self.daemon.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let stopping = Instant::now();
        while stopping.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.daemon.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.daemon.try_wait(), Ok(Some(_))) {
            eprintln!("xtask: the fresh dockerd (pid {pid}) did not stop on TERM; killing it");
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("xtask: could not remove {}: {err}", self.dir.display());
        }
    }
}

/// A Linux bridge (dockerd gives it its address), deleted when dropped.
struct Bridge(String);

impl Bridge {
    fn create(name: String) -> Result<Self> {
        crate::run(Command::new("ip").args(["link", "add", &name, "type", "bridge"]))?;
        Ok(Self(name))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// The first `10.213.N` /24 no interface of this machine uses.
fn free_subnet() -> Result<String> {
    let output = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .context("could not list this machine's addresses")?;
    let addresses = String::from_utf8_lossy(&output.stdout);
    (0..=250)
        .map(|n| format!("10.213.{n}"))
        .find(|subnet| !addresses.contains(&format!(" {subnet}.")))
        .context("no free 10.213.N.0/24 subnet for the fresh dockerd's bridge")
}
