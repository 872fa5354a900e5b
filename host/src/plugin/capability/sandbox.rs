//! `aac:plugin/sandbox`: processes in the session's sandbox, as `process` resources.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmtime::component::Resource;

use crate::plugin::bindings::backend::aac::plugin::sandbox::{
    ExecError, ExecRequest, ExitStatus, Host, HostProcess, OutputChunk, OutputStream, StdinMode,
};
use crate::plugin::state::SessionState;
use crate::sandbox::{self, ExecSpec, KillReason, ProcessHandle, ProcessLimits, Sandbox};

pub struct SandboxCapability {
    sandbox: Option<Arc<dyn Sandbox>>,
    limits: ProcessLimits,
    /// Cancelled when the current turn is cancelled: kills every process of the session.
    pub(crate) cancel: CancellationToken,
    /// Set when the sandbox was found gone during the current turn: the host then reports
    /// `sandbox-lost`, whatever the plugin concludes.
    pub(crate) lost: Option<String>,
}

impl SandboxCapability {
    pub fn new(sandbox: Option<Arc<dyn Sandbox>>, limits: ProcessLimits) -> Self {
        Self {
            sandbox,
            limits,
            cancel: CancellationToken::new(),
            lost: None,
        }
    }
}

impl Host for SessionState {
    async fn exec(
        &mut self,
        request: ExecRequest,
    ) -> wasmtime::Result<Result<Resource<ProcessHandle>, ExecError>> {
        let Some(sandbox) = self.sandbox.sandbox.clone() else {
            return Ok(Err(ExecError::SandboxLost(
                "this session has no sandbox".into(),
            )));
        };
        let spec = ExecSpec {
            argv: request.argv,
            env: request.env,
            cwd: request.cwd,
            stdin_piped: matches!(request.stdin, StdinMode::Piped),
            timeout: request.timeout_ms.map(Duration::from_millis),
            idle_timeout: request.idle_timeout_ms.map(Duration::from_millis),
        };
        self.cpu.enter_host();
        let started = sandbox.exec(spec.clone()).await;
        self.cpu.leave_host();
        let raw = match started {
            Ok(raw) => raw,
            Err(err) => {
                if let sandbox::ExecError::SandboxLost(message) = &err {
                    self.sandbox.lost = Some(message.clone());
                }
                return Ok(Err(exec_error(err)));
            }
        };
        let handle = ProcessHandle::start(
            raw,
            &spec,
            self.sandbox.limits,
            self.sandbox.cancel.child_token(),
        );
        Ok(Ok(self.table.push(handle)?))
    }
}

fn exec_error(err: sandbox::ExecError) -> ExecError {
    match err {
        sandbox::ExecError::InvalidRequest(msg) => ExecError::InvalidRequest(msg),
        sandbox::ExecError::SpawnFailed(msg) => ExecError::SpawnFailed(msg),
        sandbox::ExecError::SandboxLost(msg) => ExecError::SandboxLost(msg),
    }
}

impl HostProcess for SessionState {
    async fn read(
        &mut self,
        process: Resource<ProcessHandle>,
    ) -> wasmtime::Result<Option<OutputChunk>> {
        self.cpu.enter_host();
        let chunk = self.table.get_mut(&process)?.read().await;
        self.cpu.leave_host();
        Ok(chunk.map(|chunk| OutputChunk {
            stream: match chunk.stream {
                sandbox::OutputStream::Stdout => OutputStream::Stdout,
                sandbox::OutputStream::Stderr => OutputStream::Stderr,
            },
            data: chunk.data.to_vec(),
        }))
    }

    async fn write_stdin(
        &mut self,
        process: Resource<ProcessHandle>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.cpu.enter_host();
        let written = self.table.get_mut(&process)?.write_stdin(&data).await;
        self.cpu.leave_host();
        Ok(written.map_err(|err| format!("{err:#}")))
    }

    async fn close_stdin(&mut self, process: Resource<ProcessHandle>) -> wasmtime::Result<()> {
        self.table.get_mut(&process)?.close_stdin().await;
        Ok(())
    }

    async fn wait(&mut self, process: Resource<ProcessHandle>) -> wasmtime::Result<ExitStatus> {
        self.cpu.enter_host();
        let info = self.table.get_mut(&process)?.wait().await;
        self.cpu.leave_host();
        if let Some(message) = &info.sandbox_error {
            self.sandbox.lost = Some(message.clone());
        }
        Ok(ExitStatus {
            code: info.code,
            killed: info.killed.is_some(),
            kill_reason: info.killed.map(|reason| reason.as_str().to_string()),
            oom_killed: info.oom_killed,
        })
    }

    async fn kill(&mut self, process: Resource<ProcessHandle>) -> wasmtime::Result<()> {
        self.table.get(&process)?.kill(KillReason::Requested);
        Ok(())
    }

    async fn drop(&mut self, process: Resource<ProcessHandle>) -> wasmtime::Result<()> {
        // Dropping the handle kills a process that is still running.
        self.table.delete(process)?;
        Ok(())
    }
}
