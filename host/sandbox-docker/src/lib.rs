//! aac-sandbox-docker owns the Docker driver of `aac-sandbox`'s traits; bollard lives only here.
//! It must not depend on wasmtime, the plugin host or the manager.
//!
//! The Docker driver, through bollard: one hardened container per session; its processes run
//! through `docker exec`s, a spare's shell serving a session's processes one after another
//! (`spare`).
//!
//! Every container gets: a non-root user, `cap_drop ALL`, `no-new-privileges`, a read-only root
//! with tmpfs for `/tmp` and `$HOME`, pids/memory/cpu limits, Docker's init as PID 1, no network
//! unless the profile asks, only the workspace mounted, and labels (runner, owner, run,
//! runtime@version, expiry) so orphans can be reaped.

mod container;
mod deadline;
mod deadman;
mod egress;
mod egress_stock;
mod engine;
mod exec;
mod exec_start;
mod exit_report;
mod firewall;
pub mod labels;
mod reaper;
mod spare;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, StartContainerOptions,
};
use futures::StreamExt;
use tracing::{debug, info};

use aac_sandbox::{NetworkMode, OpenError, PullPolicy, Sandbox, SandboxDriver, SandboxSpec};
use container::DockerSandbox;
use deadline::{Call, bounded};

pub use egress_stock::MAX_READY_NETWORKS;
pub use labels::MANAGED as MANAGED_LABEL;

/// The name a sandbox with a network reaches this machine by: Docker's `host-gateway`, which
/// resolves to the address of the default bridge's interface (not the network's IPAM gateway, which a
/// fresh dockerd does not list).
pub const HOST_ALIAS: &str = "host.docker.internal";

/// The most containers [`DockerDriver::with_concurrent_starts`] lets be created and started at once.
pub const MAX_CONCURRENT_STARTS: usize = 64;

/// Containers one host creates and starts at once unless told otherwise: half its cores, at least
/// one.
pub fn default_concurrent_starts() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |cores| cores.get() / 2)
        .clamp(1, MAX_CONCURRENT_STARTS)
}

/// Opens sandboxes as Docker containers.
#[derive(Clone)]
pub struct DockerDriver {
    docker: Docker,
    runner_id: String,
    /// Print pull progress (on a terminal, when not in `--json` mode).
    show_progress: bool,
    /// Egress networks kept ready, and the teardowns of used ones.
    egress: Arc<egress_stock::EgressStock>,
    /// Turns to create and start a container. A start is the engine's costliest call (runc,
    /// the shim, namespaces and cgroups: ~180 ms of CPU here); a burst of them all at once holds
    /// every core, and every other session's processes and output wait behind it.
    starts: Arc<tokio::sync::Semaphore>,
}

impl DockerDriver {
    /// Connects to the engine Docker's environment names (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`,
    /// `DOCKER_CERT_PATH`, as the docker CLI reads them; else the local socket), retrying for a few
    /// seconds in case the daemon is still starting.
    pub async fn connect() -> Result<Self> {
        let (address, docker) = engine::client_from_env()?;
        let unreachable = format!(
            "the Docker engine at {address} does not answer: start dockerd or set DOCKER_HOST \
             (`cargo xtask docker` starts one)"
        );
        let mut delay = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            match bounded(Call::Ping, "the engine", docker.ping()).await {
                Ok(_) => break,
                Err(err) if attempts < 5 => {
                    debug!(error = %err, "Docker engine not answering yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempts += 1;
                }
                Err(err) => return Err(anyhow!("{unreachable}: {err}")),
            }
        }
        let runner_id = String::from("local");
        Ok(Self {
            starts: Arc::new(tokio::sync::Semaphore::new(default_concurrent_starts())),
            egress: egress_stock::EgressStock::start(docker.clone(), runner_id.clone(), 0),
            docker,
            runner_id,
            show_progress: false,
        })
    }

    /// Sets the runner id written on every container and network (and used by
    /// [`reap_orphans`](Self::reap_orphans)). Before [`with_ready_egress_networks`](Self::with_ready_egress_networks).
    pub fn with_runner_id(mut self, runner_id: impl Into<String>) -> Self {
        self.runner_id = runner_id.into();
        debug_assert_eq!(self.egress.target(), 0, "set the runner id first");
        self.egress =
            egress_stock::EgressStock::start(self.docker.clone(), self.runner_id.clone(), 0);
        self
    }

    /// Keeps `count` egress networks ready (at most [`MAX_READY_NETWORKS`]; 0 makes each when a
    /// sandbox needs it), refilled in the background from now on: call it on a Tokio runtime, and
    /// [`shutdown_egress`](Self::shutdown_egress) before the process ends.
    pub fn with_ready_egress_networks(mut self, count: usize) -> Self {
        self.egress =
            egress_stock::EgressStock::start(self.docker.clone(), self.runner_id.clone(), count);
        self
    }

    /// How many egress networks are ready now.
    pub fn ready_egress_networks(&self) -> usize {
        self.egress.ready_count()
    }

    /// Waits until the ready egress networks are all there and no used one is being torn down
    /// (for benchmarks and tests; never returns while the host cannot make networks).
    pub async fn egress_settled(&self) {
        self.egress.settled().await;
    }

    /// Stops making egress networks ready, removes the ready ones (with their firewall rules) and
    /// waits until every used one is torn down. Each Docker call and rule change is bounded.
    pub async fn shutdown_egress(&self) {
        self.egress.shutdown().await;
    }

    /// Lets at most `count` containers (1 to [`MAX_CONCURRENT_STARTS`]) be created and started at
    /// once; the default is [`default_concurrent_starts`].
    pub fn with_concurrent_starts(mut self, count: usize) -> Self {
        self.starts = Arc::new(tokio::sync::Semaphore::new(
            count.clamp(1, MAX_CONCURRENT_STARTS),
        ));
        self
    }

    /// Shows image-pull progress on stderr when it is a terminal.
    pub fn with_progress(mut self, show: bool) -> Self {
        self.show_progress = show && std::io::stderr().is_terminal();
        self
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    pub fn runner_id(&self) -> &str {
        &self.runner_id
    }

    /// Fails with a clear message when `image` is not present locally.
    pub async fn ensure_image(&self, image: &str) -> Result<(), OpenError> {
        self.prepare_image(image, PullPolicy::Never).await
    }

    /// Makes `image` available as `policy` allows.
    async fn prepare_image(&self, image: &str, policy: PullPolicy) -> Result<(), OpenError> {
        let target = format!("image {image}");
        let present = match bounded(
            Call::InspectImage,
            &target,
            self.docker.inspect_image(image),
        )
        .await
        {
            Ok(_) => true,
            Err(err) if err.is_not_found() => false,
            Err(err) => {
                return Err(OpenError::Engine(
                    anyhow!(err).context(format!("could not inspect image `{image}`")),
                ));
            }
        };
        match (policy, present) {
            (PullPolicy::Never, false) => Err(OpenError::ImageUnavailable(format!(
                "image `{image}` is not present in the local Docker engine and the pull policy is `never` \
                 (build it with `cargo xtask image`)"
            ))),
            (PullPolicy::Never | PullPolicy::IfNotPresent, true) => Ok(()),
            (PullPolicy::IfNotPresent | PullPolicy::Always, _) => self.pull(image, present).await,
        }
    }

    async fn pull(&self, image: &str, present: bool) -> Result<(), OpenError> {
        info!(image, "pulling image");
        let options = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            match step {
                Ok(info) => {
                    if self.show_progress
                        && let Some(status) = info.status
                    {
                        eprint!(
                            "\r\x1b[2Kpulling {image}: {status} {}",
                            info.progress.unwrap_or_default()
                        );
                    }
                }
                Err(err) if present => {
                    // `always` with an unreachable registry: the local copy still serves.
                    tracing::warn!(image, error = %err, "pull failed; using the local image");
                    return Ok(());
                }
                Err(err) => {
                    return Err(OpenError::ImageUnavailable(format!(
                        "image `{image}` is not present locally and could not be pulled: {err}"
                    )));
                }
            }
        }
        if self.show_progress {
            eprintln!();
        }
        Ok(())
    }

    async fn create_network(&self, name: &str) -> Result<()> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([
                (labels::MANAGED.to_string(), "true".to_string()),
                (labels::RUNNER.to_string(), self.runner_id.clone()),
            ])),
            ..Default::default()
        };
        bounded(
            Call::CreateNetwork,
            &format!("network {name}"),
            self.docker.create_network(request),
        )
        .await
        .with_context(|| format!("could not create network {name}"))?;
        Ok(())
    }

    /// The container of `spec` on `network`; an egress sandbox also gets its proxy settings and
    /// reaches this host only at `egress_gateway`.
    fn container_body(
        &self,
        spec: &SandboxSpec,
        network: &str,
        egress: Option<&egress::EgressNetwork>,
    ) -> Result<ContainerCreateBody> {
        let workspace = spec
            .workspace_host_dir
            .to_str()
            .ok_or_else(|| anyhow!("workspace path {:?} is not UTF-8", spec.workspace_host_dir))?;
        // tmpfs takes numeric ids only; a named user gets a HOME it may not own.
        let (uid, gid) = spec
            .user
            .split_once(':')
            .unwrap_or((spec.user.as_str(), spec.user.as_str()));
        let owner = match (uid.parse::<u32>(), gid.parse::<u32>()) {
            (Ok(uid), Ok(gid)) => format!(",uid={uid},gid={gid}"),
            _ => String::new(),
        };
        let mut container_labels: HashMap<String, String> =
            spec.labels.clone().into_iter().collect();
        container_labels.extend([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::RUNNER.to_string(), self.runner_id.clone()),
            (labels::OWNER.to_string(), labels::owner()),
            (
                labels::EXPIRES.to_string(),
                labels::unix_seconds(spec.expires_at),
            ),
        ]);
        let limits = spec.limits;
        let host_config = HostConfig {
            runtime: spec.runtime.clone(),
            binds: Some(vec![format!("{workspace}:{}", spec.workspace_dir)]),
            init: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(true),
            network_mode: Some(network.to_string()),
            // Docker's embedded resolver forwards a container's queries for outside names to
            // the host's resolvers (a channel out of an internal network, and from the host's
            // own namespace when that resolver is on loopback: CVE-2024-29018). An egress
            // sandbox needs no DNS (the proxy resolves), so its resolver's upstream is the
            // gateway, where the firewall drops everything but the proxy port.
            dns: egress.map(|egress| vec![egress.gateway().to_string()]),
            extra_hosts: match egress {
                Some(egress) => Some(vec![format!("{HOST_ALIAS}:{}", egress.gateway())]),
                None => (spec.network != NetworkMode::None)
                    .then(|| vec![format!("{HOST_ALIAS}:host-gateway")]),
            },
            tmpfs: Some(HashMap::from([
                (
                    "/tmp".to_string(),
                    "rw,nosuid,nodev,size=256m,mode=1777".to_string(),
                ),
                (
                    spec.home_dir.clone(),
                    format!("rw,nosuid,nodev,size=256m,mode=0700{owner}"),
                ),
            ])),
            pids_limit: limits.pids,
            memory: limits.memory_bytes.map(|bytes| bytes as i64),
            // No swap beyond the memory limit: an over-limit process is OOM-killed, not slowed.
            memory_swap: limits.memory_bytes.map(|bytes| bytes as i64),
            nano_cpus: limits.cpus.map(|cpus| (cpus * 1e9) as i64),
            ..Default::default()
        };
        let mut env: Vec<String> = vec![format!("HOME={}", spec.home_dir)];
        env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
        // After the profile's: the proxy settings are the sandbox's, not the profile's to change.
        if let Some(egress) = egress {
            env.extend(egress.env().iter().map(|(k, v)| format!("{k}={v}")));
        }
        Ok(ContainerCreateBody {
            image: Some(spec.image.clone()),
            // PID 1 is Docker's init; this keeps the container alive between execs.
            cmd: Some(vec!["sleep".into(), "2147483647".into()]),
            entrypoint: Some(vec![]),
            user: Some(spec.user.clone()),
            working_dir: Some(spec.workspace_dir.clone()),
            env: Some(env),
            labels: Some(container_labels),
            network_disabled: Some(spec.network == NetworkMode::None),
            host_config: Some(host_config),
            ..Default::default()
        })
    }
}

/// The policy of an `egress` sandbox opened without one: nothing allowed, verdicts dropped.
fn deny_all() -> aac_sandbox::EgressSpec {
    aac_sandbox::EgressSpec {
        allow: Arc::default(),
        events: aac_egress::EventSink::channel().0,
        resolver: aac_egress::Resolver::default(),
        credentials: Arc::default(),
    }
}

#[async_trait]
impl SandboxDriver for DockerDriver {
    async fn open(&self, spec: &SandboxSpec) -> Result<Arc<dyn Sandbox>, OpenError> {
        if spec
            .user
            .split(':')
            .next()
            .is_some_and(|uid| uid == "0" || uid == "root")
        {
            return Err(OpenError::Engine(anyhow!(
                "refusing to open a sandbox as root (user `{}`): sandboxes run as a non-root user",
                spec.user
            )));
        }
        self.prepare_image(&spec.image, spec.pull_policy).await?;
        // Held to the end of the start: the taken network's replacement is made after it.
        let _refill_after;
        let mut egress = match spec.network {
            NetworkMode::Egress => {
                let policy = spec.egress.clone().unwrap_or_else(deny_all);
                let (ready, refill_after) = self.egress.take().await;
                _refill_after = refill_after;
                let ready = ready.map_err(OpenError::Engine)?;
                Some(
                    ready
                        .activate(&policy, &self.docker)
                        .await
                        .map_err(OpenError::Engine)?,
                )
            }
            _ => None,
        };
        let own_network = match spec.network {
            NetworkMode::PerRun => {
                let name = format!("aac-{}", uuid::Uuid::new_v4().simple());
                self.create_network(&name).await?;
                Some(name)
            }
            _ => None,
        };
        let network = match (&own_network, &egress, spec.network) {
            (Some(name), _, _) => name.clone(),
            (None, Some(egress), _) => egress.name.clone(),
            (None, None, NetworkMode::Bridge) => "bridge".into(),
            (None, None, _) => "none".into(),
        };
        // Never closed: an error would only mean going ahead without the turn.
        let start_turn = self.starts.acquire().await.ok();
        let body = self.container_body(spec, &network, egress.as_ref());
        let created = match body {
            Ok(body) => bounded(
                Call::CreateContainer,
                &format!("a container of image {}", spec.image),
                self.docker
                    .create_container(None::<CreateContainerOptions>, body),
            )
            .await
            .with_context(|| format!("could not create a container from image `{}`", spec.image)),
            Err(err) => Err(err),
        };
        let created = match created {
            Ok(created) => created,
            Err(err) => {
                if let Some(egress) = egress.take() {
                    self.egress.retire(egress);
                }
                if let Some(name) = &own_network {
                    let _ = bounded(
                        Call::RemoveNetwork,
                        &format!("network {name}"),
                        self.docker.remove_network(name),
                    )
                    .await;
                }
                return Err(err.into());
            }
        };
        let sandbox = DockerSandbox::new(
            self.docker.clone(),
            created.id,
            spec.workspace_dir.clone(),
            own_network,
            egress.map(|network| (network, self.egress.clone())),
        );
        if let Err(err) = bounded(
            Call::StartContainer,
            &format!("container {}", sandbox.id()),
            self.docker
                .start_container(sandbox.id(), None::<StartContainerOptions>),
        )
        .await
        {
            let _ = sandbox.remove().await;
            return Err(anyhow!(err)
                .context(format!("could not start container {}", sandbox.id()))
                .into());
        }
        drop(start_turn);
        // The first process's spare, on its way while the dead-man's switch is armed; its shell then
        // serves the session's processes one after another.
        sandbox.prepare_spare();
        if let Err(err) = sandbox.arm_deadman().await {
            let _ = sandbox.remove().await;
            return Err(OpenError::Engine(err));
        }
        debug!(container = %sandbox.id(), image = %spec.image, "sandbox started");
        Ok(Arc::new(sandbox))
    }
}
