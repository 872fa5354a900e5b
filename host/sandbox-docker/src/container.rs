//! One session's container: processes via `docker exec`, liveness, OOM accounting and removal.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::InspectContainerOptions;
use bollard::query_parameters::RemoveContainerOptions;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::deadline::{Call, CallError, bounded};
use super::egress::EgressNetwork;
use super::egress_stock::EgressStock;
use super::exec::{DockerProcess, EXEC_WRAPPER, PID_FILE_PREFIX, SHELL_NAME};
use super::exec_start::{self, Chunks, START_FUNCTION, StartFailure};
use super::exit_report::{self, AfterExit, ExitReports, ReportedExit};
use super::spare::{self, Spares};
use aac_sandbox::{ExecError, ExecSpec, RawProcess, Sandbox};

/// Prints the container's OOM-kill count (cgroup v2 or v1), using nothing but `sh`.
const OOM_COUNT_SCRIPT: &str = r#"for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
  [ -r "$f" ] && while read -r k v; do [ "$k" = oom_kill ] && echo "$v" && exit 0; done < "$f"
done
echo 0"#;

/// A new pid file's path for one process (see `exec`).
fn new_pid_file() -> String {
    format!("{PID_FILE_PREFIX}{}.pid", uuid::Uuid::new_v4().simple())
}

pub(super) struct DockerSandbox {
    docker: Docker,
    id: String,
    workspace_dir: String,
    /// A per-run network to remove with the container.
    network: Option<String>,
    /// An egress sandbox's network, proxy and firewall rules, torn down (in the background, by the
    /// stock it came from) once the container is gone.
    egress: Mutex<Option<(EgressNetwork, Arc<EgressStock>)>>,
    /// The egress proxy's address (and credential gateway's), kept outside the lock.
    egress_gateway: Option<std::net::SocketAddr>,
    /// OOM kills already attributed to a process.
    oom_kills_seen: Arc<AtomicU64>,
    /// A started process waiting for its command: the next exec's fast path.
    spares: Arc<Spares>,
    /// Kills the container's processes once this host process is gone.
    deadman: Mutex<Option<super::deadman::DeadMan>>,
}

impl DockerSandbox {
    pub(super) fn new(
        docker: Docker,
        id: String,
        workspace_dir: String,
        network: Option<String>,
        egress: Option<(EgressNetwork, Arc<EgressStock>)>,
    ) -> Self {
        Self {
            spares: Spares::new(docker.clone(), id.clone()),
            docker,
            id,
            workspace_dir,
            network,
            egress_gateway: egress.as_ref().map(|(e, _)| e.proxy.address()),
            egress: Mutex::new(egress),
            oom_kills_seen: Arc::new(AtomicU64::new(0)),
            deadman: Mutex::new(None),
        }
    }

    /// Starts the container's dead-man's switch (see `deadman`).
    pub(super) async fn arm_deadman(&self) -> Result<()> {
        let armed = super::deadman::arm(&self.docker, &self.id).await?;
        *self.deadman.lock().unwrap_or_else(|e| e.into_inner()) = Some(armed);
        Ok(())
    }

    /// Starts a spare process in the background, unless one is ready or on its way.
    pub(super) fn prepare_spare(&self) {
        self.spares.prepare();
    }

    /// Hands `spec` to the spare process, if there is one and it starts the program; `None` when
    /// there is no usable spare (a fresh exec then). Sees to the next spare.
    async fn exec_on_spare(&self, spec: &ExecSpec) -> Option<Result<RawProcess, ExecError>> {
        let mut spare = self.spares.take().await?;
        let nonce = exit_report::nonce();
        let pid_file = new_pid_file();
        let line = spare::command_line(spec, &self.workspace_dir, &pid_file, &nonce);
        if spare.input.write_all(line.as_bytes()).await.is_err()
            || spare.input.flush().await.is_err()
        {
            return None;
        }
        let output =
            match exec_start::started(&self.id, spec, &self.workspace_dir, spare.output).await {
                Ok(output) => output,
                // The shell ended (something in the sandbox ended it, or the sandbox is at its pids
                // limit): a fresh exec tells which.
                Err(StartFailure::NoStatus) => return None,
                Err(StartFailure::Refused(err)) => {
                    self.spares.prepare();
                    return Some(Err(err));
                }
            };
        let (stdin, after_exit) = if spec.stdin_piped {
            self.spares.prepare();
            (Some(spare.input), None)
        } else {
            let ended = Arc::new(AtomicBool::new(false));
            self.spares.prepare_unless_ended(ended.clone());
            let comeback =
                self.spares
                    .comeback(spare.exec_id.clone(), spare.input, nonce.clone(), ended);
            (None, Some(comeback))
        };
        Some(Ok(self.attach(
            output,
            stdin,
            spare.exec_id,
            pid_file,
            &nonce,
            after_exit,
        )))
    }

    /// A started exec as a [`RawProcess`].
    fn attach(
        &self,
        output: Chunks,
        stdin: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
        exec_id: String,
        pid_file: String,
        nonce: &str,
        after_exit: Option<AfterExit>,
    ) -> RawProcess {
        let reported = ReportedExit::default();
        let output = exit_report::watch(
            output,
            ExitReports::new(nonce, reported.clone()),
            after_exit,
        );
        let control = Arc::new(DockerProcess {
            docker: self.docker.clone(),
            container: self.id.clone(),
            exec_id,
            pid_file,
            oom: OomCounter::new(
                self.docker.clone(),
                self.id.clone(),
                self.oom_kills_seen.clone(),
            ),
            reported,
            spares: self.spares.clone(),
        });
        RawProcess {
            output,
            stdin,
            control,
        }
    }
}

/// Counts OOM kills in a container — of any process in it, a grandchild too — so a process's end
/// can be told apart from one by the OOM killer.
pub(super) struct OomCounter {
    docker: Docker,
    container: String,
    seen: Arc<AtomicU64>,
    /// The container's cgroup file with the count, when this host can read it (a local engine):
    /// a file read instead of an exec.
    host_file: Option<std::path::PathBuf>,
}

impl OomCounter {
    pub(super) fn new(docker: Docker, container: String, seen: Arc<AtomicU64>) -> Self {
        let host_file = [
            format!("/sys/fs/cgroup/memory/docker/{container}/memory.oom_control"),
            format!("/sys/fs/cgroup/docker/{container}/memory.events"),
            format!("/sys/fs/cgroup/system.slice/docker-{container}.scope/memory.events"),
        ]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|path| path.is_file());
        Self {
            docker,
            container,
            seen,
            host_file,
        }
    }

    /// Whether asking costs no exec, so it can be done after every process.
    pub(super) fn is_cheap(&self) -> bool {
        self.host_file.is_some()
    }

    /// True when the container had an OOM kill not yet attributed to a process.
    pub(super) async fn new_kill(&self) -> Result<bool> {
        let from_host = self
            .host_file
            .as_ref()
            .and_then(|file| std::fs::read_to_string(file).ok())
            .and_then(|text| oom_kill_count(&text));
        let count = match from_host {
            Some(count) => count,
            None => {
                let output = run_to_end(&self.docker, &self.container, OOM_COUNT_SCRIPT).await?;
                output.trim().parse().unwrap_or(0)
            }
        };
        let before = self.seen.fetch_max(count, Ordering::SeqCst);
        Ok(count > before)
    }
}

/// The `oom_kill N` line of a cgroup's `memory.events` (v2) or `memory.oom_control` (v1).
fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|count| count.trim().parse().ok())
}

/// Runs a short `sh -c` script as the container's user and returns its stdout, all within one
/// deadline.
async fn run_to_end(docker: &Docker, container: &str, script: &str) -> Result<String> {
    let target = format!("container {container}");
    let text = bounded(
        Call::HelperScript,
        &target,
        script_output(docker, container, script),
    )
    .await?;
    Ok(text)
}

async fn script_output(
    docker: &Docker,
    container: &str,
    script: &str,
) -> Result<String, bollard::errors::Error> {
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(false),
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
        ..Default::default()
    };
    let exec = docker.create_exec(container, config).await?;
    let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await?
    else {
        return Ok(String::new());
    };
    let mut text = String::new();
    while let Some(item) = output.next().await {
        if let LogOutput::StdOut { message } = item? {
            text.push_str(&String::from_utf8_lossy(&message));
        }
    }
    Ok(text)
}

#[async_trait]
impl Sandbox for DockerSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    fn egress_gateway(&self) -> Option<std::net::SocketAddr> {
        self.egress_gateway
    }

    async fn exec(&self, spec: ExecSpec) -> Result<RawProcess, ExecError> {
        if spec.argv.is_empty() {
            return Err(ExecError::InvalidRequest("argv is empty".into()));
        }
        if let Some(process) = self.exec_on_spare(&spec).await {
            return process;
        }
        let pid_file = new_pid_file();
        let nonce = exit_report::nonce();
        let mut cmd = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            format!("{START_FUNCTION}{EXEC_WRAPPER}"),
            SHELL_NAME.into(),
            pid_file.clone(),
            nonce.clone(),
        ];
        // The variables are Docker's to set here.
        cmd.extend(exec_start::start_args(&spec, &self.workspace_dir, false));
        let config = ExecConfig {
            attach_stdin: Some(spec.stdin_piped),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            cmd: Some(cmd),
            // The wrapper enters the requested cwd itself, so a bad one is told apart.
            working_dir: Some(self.workspace_dir.clone()),
            ..Default::default()
        };
        let target = format!("container {}", self.id);
        let turn = self.spares.exec_turn().await;
        let exec = bounded(
            Call::CreateExec,
            &target,
            self.docker.create_exec(&self.id, config),
        )
        .await
        .map_err(|err| classify_exec_error(&self.id, err))?;
        let options = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: None,
        };
        let started = bounded(
            Call::StartExec,
            &target,
            self.docker.start_exec(&exec.id, Some(options)),
        )
        .await
        .map_err(|err| classify_exec_error(&self.id, err))?;
        drop(turn);
        let StartExecResults::Attached { output, input } = started else {
            return Err(ExecError::SpawnFailed(
                "docker started the exec detached".into(),
            ));
        };
        // The spare is prepared whatever the outcome: the failed exec has already ended.
        self.spares.prepare();
        let output = exec_start::started(
            &self.id,
            &spec,
            &self.workspace_dir,
            exec_start::chunks(output),
        )
        .await
        .map_err(|failure| failure.into_exec_error(&self.id))?;
        let stdin = spec.stdin_piped.then_some(input);
        Ok(self.attach(output, stdin, exec.id, pid_file, &nonce, None))
    }

    async fn warm_up(&self) -> Result<()> {
        Ok(self.spares.warm_up().await?)
    }

    async fn remove(&self) -> Result<()> {
        self.spares.close();
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let target = format!("container {}", self.id);
        let removed = match bounded(
            Call::RemoveContainer,
            &target,
            self.docker.remove_container(&self.id, Some(options)),
        )
        .await
        {
            Ok(()) => Ok(()),
            Err(err) if err.is_not_found() => Ok(()),
            Err(err) => Err(err).with_context(|| format!("could not remove container {}", self.id)),
        };
        let egress = self.egress.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((network, stock)) = egress {
            if removed.is_ok() {
                stock.retire(network);
            } else {
                // The container may still be on the network: its rules stay until the reaper
                // has removed the container, then the network, then them.
                network.proxy.stop();
                tracing::warn!(network = %network.name, "egress network kept: its container could not be removed");
            }
        }
        if let Some(network) = &self.network {
            let _ = bounded(
                Call::RemoveNetwork,
                &format!("network {network}"),
                self.docker.remove_network(network),
            )
            .await;
        }
        removed
    }

    async fn is_alive(&self) -> Result<bool> {
        container_running(&self.docker, &self.id).await
    }
}

/// Whether a container is running; a container that no longer exists is not.
pub(super) async fn container_running(docker: &Docker, id: &str) -> Result<bool> {
    let target = format!("container {id}");
    match bounded(
        Call::InspectContainer,
        &target,
        docker.inspect_container(id, None::<InspectContainerOptions>),
    )
    .await
    {
        Ok(inspect) => Ok(inspect
            .state
            .and_then(|state| state.running)
            .unwrap_or(false)),
        Err(err) if err.is_not_found() => Ok(false),
        Err(err) => Err(err).with_context(|| format!("could not inspect container {id}")),
    }
}

/// A container that is gone, stopped or does not answer in time is lost; anything else is this
/// process failing to start.
fn classify_exec_error(container: &str, err: CallError) -> ExecError {
    match err {
        CallError::Engine(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            message,
        }) => ExecError::SandboxLost(format!("container {container}: {message}")),
        timed_out @ CallError::TimedOut { .. } => ExecError::SandboxLost(timed_out.to_string()),
        CallError::Engine(other) => {
            ExecError::SpawnFailed(format!("container {container}: {other}"))
        }
    }
}
