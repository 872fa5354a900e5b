//! A sandbox driver without Docker, for tests whose subject is a run's lifecycle (claims, leases,
//! heartbeats, cancellation), not the sandbox. Each exec is a plain process on the host in a process
//! group of its own, with the sandbox's workspace directory standing in for `/workspace`.
//!
//! It isolates nothing: it must never serve a real run. It counts what a Docker test would ask
//! the engine (sandboxes opened, sandboxes still alive), so the same assertions hold.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aac_host::sandbox::{
    ExecError, ExecSpec, ExitInfo, OpenError, OutputChunk, OutputStream, ProcessControl,
    RawProcess, Sandbox, SandboxDriver, SandboxSpec, Signal,
};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio_util::io::ReaderStream;

use aac_host::sandbox::docker::labels::RUN as RUN_LABEL;

/// Opens [`HostSandbox`]es and remembers which are still alive, by run.
#[derive(Clone, Default)]
pub struct HostProcessDriver {
    state: Arc<DriverState>,
}

#[derive(Default)]
struct DriverState {
    opened: AtomicUsize,
    execs: AtomicUsize,
    /// `(sandbox id, run id)` of every sandbox not removed yet.
    alive: Mutex<HashSet<(String, String)>>,
}

impl HostProcessDriver {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many sandboxes were opened, for any run.
    pub fn opened(&self) -> usize {
        self.state.opened.load(Ordering::SeqCst)
    }

    /// How many processes were started, in any sandbox.
    pub fn execs(&self) -> usize {
        self.state.execs.load(Ordering::SeqCst)
    }

    /// Sandboxes of `run` that were opened and not removed: what `containers_of_run` is for Docker.
    pub fn alive_of_run(&self, run: &str) -> usize {
        let alive = self.state.alive.lock().unwrap();
        alive.iter().filter(|(_, r)| r == run).count()
    }
}

#[async_trait]
impl SandboxDriver for HostProcessDriver {
    async fn open(&self, spec: &SandboxSpec) -> Result<Arc<dyn Sandbox>, OpenError> {
        let n = self.state.opened.fetch_add(1, Ordering::SeqCst) + 1;
        std::fs::create_dir_all(&spec.workspace_host_dir)
            .map_err(|err| OpenError::Engine(anyhow::anyhow!("creating the workspace: {err}")))?;
        let id = format!("host-{n}");
        let run = spec.labels.get(RUN_LABEL).cloned().unwrap_or_default();
        self.state
            .alive
            .lock()
            .unwrap()
            .insert((id.clone(), run.clone()));
        Ok(Arc::new(HostSandbox {
            id,
            run,
            workspace_dir: spec.workspace_dir.clone(),
            workspace_host_dir: spec.workspace_host_dir.clone(),
            env: spec.env.clone(),
            groups: Mutex::default(),
            driver: self.state.clone(),
        }))
    }
}

/// One "sandbox": the host, a workspace directory, and the process groups started in it.
pub struct HostSandbox {
    id: String,
    run: String,
    workspace_dir: String,
    workspace_host_dir: PathBuf,
    env: Vec<(String, String)>,
    /// Process group ids of every process started here, killed on `remove`.
    groups: Mutex<Vec<i32>>,
    driver: Arc<DriverState>,
}

impl HostSandbox {
    /// Maps a path inside the "sandbox" to the host: the workspace prefix becomes its host dir.
    fn host_path(&self, path: &str) -> PathBuf {
        match path.strip_prefix(&self.workspace_dir) {
            Some(rest) => self.workspace_host_dir.join(rest.trim_start_matches('/')),
            None => PathBuf::from(path),
        }
    }
}

#[async_trait]
impl Sandbox for HostSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn exec(&self, spec: ExecSpec) -> Result<RawProcess, ExecError> {
        let (program, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| ExecError::InvalidRequest("empty argv".into()))?;
        let cwd = spec
            .cwd
            .as_deref()
            .map(|cwd| self.host_path(cwd))
            .unwrap_or_else(|| self.workspace_host_dir.clone());
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .current_dir(&cwd)
            .envs(self.env.iter().chain(&spec.env).cloned())
            .stdin(if spec.stdin_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|err| {
            ExecError::SpawnFailed(format!("{program} in {}: {err}", cwd.display()))
        })?;
        self.driver.execs.fetch_add(1, Ordering::SeqCst);
        let pgid = child.id().map(|pid| pid as i32).unwrap_or_default();
        self.groups.lock().unwrap().push(pgid);
        let stdout = chunks(child.stdout.take().unwrap(), OutputStream::Stdout);
        let stderr = chunks(child.stderr.take().unwrap(), OutputStream::Stderr);
        let stdin = child
            .stdin
            .take()
            .map(|stdin| Box::pin(stdin) as std::pin::Pin<Box<_>>);
        Ok(RawProcess {
            output: futures::stream::select(stdout, stderr).boxed(),
            stdin,
            control: Arc::new(HostProcess {
                pgid,
                child: tokio::sync::Mutex::new(child),
            }),
        })
    }

    async fn remove(&self) -> anyhow::Result<()> {
        for pgid in self.groups.lock().unwrap().drain(..) {
            kill_group(pgid, libc::SIGKILL);
        }
        self.driver
            .alive
            .lock()
            .unwrap()
            .remove(&(self.id.clone(), self.run.clone()));
        Ok(())
    }

    async fn is_alive(&self) -> anyhow::Result<bool> {
        let alive = self.driver.alive.lock().unwrap();
        Ok(alive.contains(&(self.id.clone(), self.run.clone())))
    }
}

struct HostProcess {
    pgid: i32,
    child: tokio::sync::Mutex<tokio::process::Child>,
}

#[async_trait]
impl ProcessControl for HostProcess {
    async fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let signal = match signal {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        kill_group(self.pgid, signal);
        Ok(())
    }

    async fn exit_info(&self) -> anyhow::Result<ExitInfo> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.lock().await.wait().await?;
        Ok(ExitInfo {
            code: status.code().or(status.signal().map(|signal| 128 + signal)),
            ..ExitInfo::default()
        })
    }
}

fn kill_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) on a process group this driver created; no memory is involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

fn chunks(
    reader: impl AsyncRead + Send + 'static,
    stream: OutputStream,
) -> futures::stream::BoxStream<'static, anyhow::Result<OutputChunk>> {
    ReaderStream::new(reader)
        .map(move |data| {
            data.map(|data| OutputChunk { stream, data })
                .map_err(anyhow::Error::from)
        })
        .boxed()
}
