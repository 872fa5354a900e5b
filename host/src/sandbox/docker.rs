//! The Docker driver, through bollard: one container per session, one `docker exec` per process.
//!
//! Processes are started through a tiny `/bin/sh` wrapper that records the process id, so a kill can
//! reach the process and every descendant (Docker has no API to signal an exec). Images must
//! therefore contain a POSIX `/bin/sh`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use futures::StreamExt;
use tracing::{debug, warn};

use super::{
    ExecError, ExecSpec, ExitInfo, OutputChunk, OutputStream, ProcessControl, RawProcess, Sandbox,
    SandboxDriver, SandboxSpec, Signal,
};

/// Label on every container this host creates.
pub const MANAGED_LABEL: &str = "dev.aac-host.managed";

const PID_DIR: &str = "/tmp/.aac-exec";

/// Records the shell's pid (which `exec` hands to the real program), then runs the program.
const EXEC_WRAPPER: &str = r#"mkdir -p "${0%/*}" 2>/dev/null; echo $$ > "$0" && exec "$@""#;

/// Sends a signal to a recorded pid and all its descendants, collected before any is signalled.
const KILL_SCRIPT: &str = r#"pid=$(cat "$0" 2>/dev/null) || exit 0
tree() { for c in $(cat /proc/$1/task/*/children 2>/dev/null); do tree "$c"; done; echo "$1"; }
kill -s "$1" $(tree "$pid") 2>/dev/null
exit 0"#;

/// Opens sandboxes as Docker containers.
#[derive(Clone)]
pub struct DockerDriver {
    docker: Docker,
}

impl DockerDriver {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket) and checks it answers.
    pub async fn connect() -> Result<Self> {
        let docker = Docker::connect_with_local_defaults()
            .context("could not set up a Docker client (is DOCKER_HOST valid?)")?;
        docker.ping().await.context(
            "the Docker engine does not answer: start dockerd or set DOCKER_HOST (see README: `cargo xtask demo` starts one)",
        )?;
        Ok(Self { docker })
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Fails with a clear message when `image` is not present locally.
    pub async fn ensure_image(&self, image: &str) -> Result<()> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => bail!(
                "image `{image}` is not present in the local Docker engine (build it with `cargo xtask image`)"
            ),
            Err(err) => Err(err).with_context(|| format!("could not inspect image `{image}`")),
        }
    }
}

#[async_trait]
impl SandboxDriver for DockerDriver {
    async fn open(&self, spec: &SandboxSpec) -> Result<Arc<dyn Sandbox>> {
        self.ensure_image(&spec.image).await?;
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(MANAGED_LABEL.into(), "true".into());
        let workspace = spec
            .workspace_host_dir
            .to_str()
            .ok_or_else(|| anyhow!("workspace path {:?} is not UTF-8", spec.workspace_host_dir))?;
        let host_config = HostConfig {
            binds: Some(vec![format!("{workspace}:{}", spec.workspace_dir)]),
            init: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            network_mode: Some(spec.network.clone()),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                "rw,nosuid,nodev,size=256m,mode=1777".to_string(),
            )])),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // PID 1 is Docker's init; this keeps the container alive between execs.
            cmd: Some(vec!["sleep".into(), "2147483647".into()]),
            user: Some(spec.user.clone()),
            working_dir: Some(spec.workspace_dir.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            network_disabled: Some(spec.network == "none"),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .with_context(|| format!("could not create a container from image `{}`", spec.image))?;
        let container = DockerSandbox {
            docker: self.docker.clone(),
            id: created.id,
            workspace_dir: spec.workspace_dir.clone(),
        };
        if let Err(err) = self
            .docker
            .start_container(
                &container.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            let _ = container.remove().await;
            return Err(err).with_context(|| format!("could not start container {}", container.id));
        }
        debug!(container = %container.id, image = %spec.image, "sandbox started");
        Ok(Arc::new(container))
    }
}

struct DockerSandbox {
    docker: Docker,
    id: String,
    workspace_dir: String,
}

#[async_trait]
impl Sandbox for DockerSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    async fn exec(&self, spec: ExecSpec) -> Result<RawProcess, ExecError> {
        if spec.argv.is_empty() {
            return Err(ExecError::InvalidRequest("argv is empty".into()));
        }
        let pid_file = format!("{PID_DIR}/{}.pid", uuid::Uuid::new_v4().simple());
        let mut cmd = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            EXEC_WRAPPER.into(),
            pid_file.clone(),
        ];
        cmd.extend(spec.argv.iter().cloned());
        let config = ExecConfig {
            attach_stdin: Some(spec.stdin_piped),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            cmd: Some(cmd),
            working_dir: Some(
                spec.cwd
                    .clone()
                    .unwrap_or_else(|| self.workspace_dir.clone()),
            ),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(&self.id, config)
            .await
            .map_err(|err| classify_exec_error(&self.id, err))?;
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|err| classify_exec_error(&self.id, err))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(ExecError::SpawnFailed(
                "docker started the exec detached".into(),
            ));
        };
        let output = output
            .filter_map(|item| async move {
                match item {
                    Ok(LogOutput::StdOut { message }) => Some(Ok(OutputChunk {
                        stream: OutputStream::Stdout,
                        data: message,
                    })),
                    Ok(LogOutput::StdErr { message }) => Some(Ok(OutputChunk {
                        stream: OutputStream::Stderr,
                        data: message,
                    })),
                    Ok(_) => None,
                    Err(err) => Some(Err(anyhow!(err).context("the exec's output stream broke"))),
                }
            })
            .boxed();
        let control = Arc::new(DockerProcess {
            docker: self.docker.clone(),
            container: self.id.clone(),
            exec_id: exec.id,
            pid_file,
        });
        Ok(RawProcess {
            output,
            stdin: spec.stdin_piped.then_some(input),
            control,
        })
    }

    async fn remove(&self) -> Result<()> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(&self.id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(err) => Err(err).with_context(|| format!("could not remove container {}", self.id)),
        }
    }
}

fn classify_exec_error(container: &str, err: bollard::errors::Error) -> ExecError {
    match err {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            message,
        } => ExecError::SandboxLost(format!("container {container}: {message}")),
        other => ExecError::SpawnFailed(format!("container {container}: {other}")),
    }
}

struct DockerProcess {
    docker: Docker,
    container: String,
    exec_id: String,
    pid_file: String,
}

#[async_trait]
impl ProcessControl for DockerProcess {
    async fn signal(&self, signal: Signal) -> Result<()> {
        let name = match signal {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        };
        let config = ExecConfig {
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            cmd: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                KILL_SCRIPT.into(),
                self.pid_file.clone(),
                name.into(),
            ]),
            ..Default::default()
        };
        let exec = self.docker.create_exec(&self.container, config).await?;
        self.docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: true,
                    ..Default::default()
                }),
            )
            .await?;
        Ok(())
    }

    async fn exit_info(&self) -> Result<ExitInfo> {
        // The output ends a moment before Docker records the exit code.
        for attempt in 0..50u32 {
            let inspect = self
                .docker
                .inspect_exec(&self.exec_id)
                .await
                .with_context(|| format!("could not inspect exec {}", self.exec_id))?;
            if inspect.running != Some(true) {
                let code = inspect.exit_code.map(|code| code as i32);
                return Ok(ExitInfo {
                    code,
                    ..ExitInfo::default()
                });
            }
            tokio::time::sleep(Duration::from_millis(2 * u64::from(attempt.min(10)) + 1)).await;
        }
        warn!(exec = %self.exec_id, "exec still running after its output ended");
        bail!(
            "exec {} still reports running after its output ended",
            self.exec_id
        )
    }
}
