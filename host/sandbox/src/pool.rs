//! Warm pools: started, probed containers waiting for a session, per runtime@version.
//!
//! A container enters the pool only after it started and answered a probe exec, so a container that
//! is not ready is never handed out. When the pool is empty, `acquire` opens a cold sandbox at once
//! instead of waiting: exhaustion costs a cold start, never a deadlock. Refill runs in the
//! background, one container at a time, so a burst of sessions cannot start a storm of creations.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::{
    ExecSpec, OpenError, ProcessHandle, ProcessLimits, Sandbox, SandboxDriver, SandboxSpec,
};

/// A pooled container proven alive this recently is handed out without asking the engine again.
/// Older ones are checked first; a container that dies after hand-out is `sandbox-lost` on its
/// first exec either way.
const FRESHNESS: std::time::Duration = std::time::Duration::from_secs(2);

/// A sandbox with the workspace directory it was created on.
pub struct PooledSandbox {
    pub sandbox: Arc<dyn Sandbox>,
    pub workspace: PathBuf,
    /// True when it came from the pool, false for a cold start.
    pub warm: bool,
    /// When the sandbox was last proven alive.
    verified_at: std::time::Instant,
}

pub struct WarmPool {
    driver: Arc<dyn SandboxDriver>,
    template: SandboxSpec,
    workspace_root: PathBuf,
    size: usize,
    ready: Mutex<VecDeque<PooledSandbox>>,
    refill: Arc<Notify>,
    filled: Notify,
    shutdown: tokio_util::sync::CancellationToken,
    /// The background refill, awaited on shutdown so no creation in flight outlives the pool.
    refill_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl WarmPool {
    /// Starts a pool of `size` containers like `template`, each on its own workspace under
    /// `workspace_root`, and its background refill.
    pub fn start(
        driver: Arc<dyn SandboxDriver>,
        template: SandboxSpec,
        workspace_root: PathBuf,
        size: usize,
    ) -> Arc<Self> {
        let pool = Arc::new(Self {
            driver,
            template,
            workspace_root,
            size,
            ready: Mutex::new(VecDeque::new()),
            refill: Arc::new(Notify::new()),
            filled: Notify::new(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            refill_task: Mutex::new(None),
        });
        let task = tokio::spawn(Self::refill_loop(
            Arc::downgrade(&pool),
            pool.shutdown.clone(),
        ));
        *pool.refill_task.lock().expect("pool lock") = Some(task);
        pool.refill.notify_one();
        pool
    }

    /// How many ready containers the pool keeps.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn ready_count(&self) -> usize {
        self.ready.lock().expect("pool lock").len()
    }

    /// Waits until the pool holds `size` ready containers.
    pub async fn wait_full(&self) {
        loop {
            let notified = self.filled.notified();
            if self.ready_count() >= self.size {
                return;
            }
            notified.await;
        }
    }

    /// A sandbox for a new session: a warm one when ready, else a cold start.
    pub async fn acquire(&self) -> Result<PooledSandbox, OpenError> {
        loop {
            let candidate = self.ready.lock().expect("pool lock").pop_front();
            self.refill.notify_one();
            let Some(candidate) = candidate else { break };
            if candidate.verified_at.elapsed() < FRESHNESS {
                return Ok(candidate);
            }
            // A container that died while waiting is discarded, never handed out.
            match candidate.sandbox.is_alive().await {
                Ok(true) => return Ok(candidate),
                _ => {
                    warn!(
                        container = candidate.sandbox.id(),
                        "warm sandbox died while pooled; discarding"
                    );
                    let _ = candidate.sandbox.remove().await;
                }
            }
        }
        debug!("warm pool empty; cold start");
        let mut cold = self.create().await?;
        cold.warm = false;
        Ok(cold)
    }

    /// Stops refilling (waiting for a creation in flight, which removes its container) and removes
    /// every pooled container.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let task = self.refill_task.lock().expect("pool lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let drained: Vec<_> = self.ready.lock().expect("pool lock").drain(..).collect();
        for pooled in drained {
            let _ = pooled.sandbox.remove().await;
        }
    }

    async fn create(&self) -> Result<PooledSandbox, OpenError> {
        let workspace = self
            .workspace_root
            .join(uuid::Uuid::new_v4().simple().to_string());
        prepare_workspace(&workspace, &self.template.user)?;
        let mut spec = self.template.clone();
        spec.workspace_host_dir = workspace.clone();
        let sandbox = self.driver.open(&spec).await?;
        Ok(PooledSandbox {
            sandbox,
            workspace,
            warm: true,
            verified_at: std::time::Instant::now(),
        })
    }

    /// Creates one container and proves it can run a process.
    async fn create_ready(&self) -> Result<PooledSandbox, OpenError> {
        let pooled = self.create().await?;
        let probe = ExecSpec {
            argv: vec!["true".into()],
            ..ExecSpec::default()
        };
        let mut pooled = pooled;
        let ready = match pooled.sandbox.exec(probe.clone()).await {
            Ok(raw) => {
                let mut handle =
                    ProcessHandle::start(raw, &probe, ProcessLimits::default(), Default::default());
                handle.wait().await.code == Some(0)
            }
            Err(_) => false,
        };
        if !ready {
            let _ = pooled.sandbox.remove().await;
            return Err(OpenError::Engine(anyhow::anyhow!(
                "a new warm sandbox of `{}` failed its readiness probe",
                self.template.image
            )));
        }
        // A spare process makes the session's first exec a pipe write instead of a runc exec.
        if let Err(err) = pooled.sandbox.warm_up().await {
            warn!(error = %format!("{err:#}"), "a warm sandbox has no spare process");
        }
        pooled.verified_at = std::time::Instant::now();
        Ok(pooled)
    }

    async fn refill_loop(
        pool: std::sync::Weak<Self>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut failures = 0u32;
        loop {
            let Some(this) = pool.upgrade() else { return };
            if this.ready_count() >= this.size {
                this.filled.notify_waiters();
                let refill = this.refill.clone();
                drop(this);
                tokio::select! {
                    () = refill.notified() => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            match this.create_ready().await {
                Ok(pooled) if !shutdown.is_cancelled() => {
                    failures = 0;
                    this.ready.lock().expect("pool lock").push_back(pooled);
                }
                Ok(pooled) => {
                    let _ = pooled.sandbox.remove().await;
                    return;
                }
                Err(err) => {
                    failures += 1;
                    warn!(error = %err, failures, "could not warm a sandbox");
                    drop(this);
                    // Back off so a broken image or engine does not cause a storm of creations.
                    let delay = std::time::Duration::from_millis(200 * 2u64.pow(failures.min(6)));
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }
}

/// Creates a workspace directory the sandbox user can write. Run as root, everything already in it
/// (a `--workspace` the user filled) is given to the sandbox user too, so the agent can change the
/// files it starts from: see [`give_to_user`].
pub fn prepare_workspace(dir: &std::path::Path, user: &str) -> Result<(), OpenError> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("could not create workspace {}", dir.display()))?;
    give_to_user(dir, user)?;
    Ok(())
}

/// Gives `dir` and everything under it (a workspace the user filled, or a materialized bundle) to
/// the sandbox user, so the agent can change the files it starts from. Only root can, and only
/// root needs to. Links are not followed and other file systems mounted inside are left alone;
/// a directory directly under `/` (or `/` itself) is refused: it is never a workspace.
pub fn give_to_user(dir: &std::path::Path, user: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut ids = user.split(':').map(|part| part.parse::<u32>().ok());
    let (uid, gid) = (ids.next().flatten(), ids.next().flatten());
    if uid.is_none() || !am_root() {
        return Ok(());
    }
    let dir = std::path::absolute(dir)?;
    if dir.components().count() < 3 {
        anyhow::bail!(
            "refusing to give {} and everything in it to the sandbox user {user}: \
             use a directory of its own as the workspace",
            dir.display()
        );
    }
    let device = dir
        .symlink_metadata()
        .with_context(|| format!("could not read {}", dir.display()))?
        .dev();
    let mut pending = vec![dir];
    while let Some(path) = pending.pop() {
        let meta = path.symlink_metadata()?;
        if meta.dev() != device {
            continue;
        }
        if (meta.uid(), meta.gid()) != (uid.unwrap_or(meta.uid()), gid.unwrap_or(meta.gid())) {
            std::os::unix::fs::lchown(&path, uid, gid)
                .with_context(|| format!("could not give {} to {user}", path.display()))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

fn am_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}
