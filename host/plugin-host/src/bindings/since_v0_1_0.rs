//! `aac:plugin@0.1.0`, frozen: bindings generated from `host/plugin-host/wit-0.1.0/` (never edited)
//! and the adapter that serves a 0.1.0 plugin with the current host logic. Every import of 0.1.0 is
//! answered by the 0.2.0 implementation after converting its arguments; every export is called
//! through [`super::super::guest`], which converts the results to 0.2.0 types.
//!
//! What 0.1.0 says differently: `exit-status.kill-reason` is a string, `bundle-ref.kind` a string
//! beside `location`, and `session.start` fails with a bare string (read as `backend-crashed`, as
//! 0.1.0 documents).

use wasmtime::component::Resource;

use super::backend::aac::plugin as latest;
use super::materializer::exports::aac::plugin::materialize as latest_materialize;
use crate::state::{BackendWorld, MaterializerWorld, SessionState, WorldState};
use aac_sandbox::ProcessHandle;

/// The 0.1.0 `backend` world.
pub mod backend {
    wasmtime::component::bindgen!({
        path: "wit-0.1.0",
        world: "aac:plugin/backend",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "aac:plugin/sandbox.process": aac_sandbox::ProcessHandle,
        },
    });
}

/// The 0.1.0 `materializer` world.
pub mod materializer {
    wasmtime::component::bindgen!({
        path: "wit-0.1.0",
        world: "aac:plugin/materializer",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "aac:plugin/log": super::backend::aac::plugin::log,
            "aac:plugin/types": super::backend::aac::plugin::types,
        },
    });
}

use backend::aac::plugin as old;

// ---- imports: 0.1.0 calls answered by the 0.2.0 host logic ----

impl<W: WorldState> old::log::Host for SessionState<W> {
    async fn log(&mut self, level: old::log::Level, message: String) -> wasmtime::Result<()> {
        use latest::log::Level as L;
        use old::log::Level as O;
        let level = match level {
            O::Trace => L::Trace,
            O::Debug => L::Debug,
            O::Info => L::Info,
            O::Warn => L::Warn,
            O::Error => L::Error,
        };
        latest::log::Host::log(self, level, message).await
    }
}

impl<W: WorldState> old::types::Host for SessionState<W> {}

impl old::events::Host for SessionState<BackendWorld> {
    async fn emit(&mut self, event: old::types::Event) -> wasmtime::Result<()> {
        let event = latest::types::Event {
            kind: event.kind,
            payload_json: event.payload_json,
        };
        latest::events::Host::emit(self, event).await
    }

    async fn output_open(&mut self) -> wasmtime::Result<bool> {
        latest::events::Host::output_open(self).await
    }

    async fn skipped_output(&mut self, events: u64) -> wasmtime::Result<()> {
        latest::events::Host::skipped_output(self, events).await
    }
}

impl old::sandbox::Host for SessionState<BackendWorld> {
    async fn exec(
        &mut self,
        request: old::sandbox::ExecRequest,
    ) -> wasmtime::Result<Result<Resource<ProcessHandle>, old::sandbox::ExecError>> {
        let request = latest::sandbox::ExecRequest {
            argv: request.argv,
            env: request.env,
            cwd: request.cwd,
            stdin: match request.stdin {
                old::sandbox::StdinMode::Null => latest::sandbox::StdinMode::Null,
                old::sandbox::StdinMode::Piped => latest::sandbox::StdinMode::Piped,
            },
            timeout_ms: request.timeout_ms,
            idle_timeout_ms: request.idle_timeout_ms,
        };
        let started = latest::sandbox::Host::exec(self, request).await?;
        Ok(started.map_err(|err| match err {
            latest::sandbox::ExecError::InvalidRequest(m) => {
                old::sandbox::ExecError::InvalidRequest(m)
            }
            latest::sandbox::ExecError::SpawnFailed(m) => old::sandbox::ExecError::SpawnFailed(m),
            latest::sandbox::ExecError::SandboxLost(m) => old::sandbox::ExecError::SandboxLost(m),
        }))
    }
}

impl old::sandbox::HostProcess for SessionState<BackendWorld> {
    async fn read(
        &mut self,
        process: Resource<ProcessHandle>,
    ) -> wasmtime::Result<Option<old::sandbox::OutputChunk>> {
        let chunk = latest::sandbox::HostProcess::read(self, process).await?;
        Ok(chunk.map(|chunk| old::sandbox::OutputChunk {
            stream: match chunk.stream {
                latest::sandbox::OutputStream::Stdout => old::sandbox::OutputStream::Stdout,
                latest::sandbox::OutputStream::Stderr => old::sandbox::OutputStream::Stderr,
            },
            data: chunk.data,
        }))
    }

    async fn write_stdin(
        &mut self,
        process: Resource<ProcessHandle>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        latest::sandbox::HostProcess::write_stdin(self, process, data).await
    }

    async fn close_stdin(&mut self, process: Resource<ProcessHandle>) -> wasmtime::Result<()> {
        latest::sandbox::HostProcess::close_stdin(self, process).await
    }

    async fn wait(
        &mut self,
        process: Resource<ProcessHandle>,
    ) -> wasmtime::Result<old::sandbox::ExitStatus> {
        let status = latest::sandbox::HostProcess::wait(self, process).await?;
        Ok(old::sandbox::ExitStatus {
            code: status.code,
            killed: status.killed,
            kill_reason: status
                .kill_reason
                .map(|reason| kill_reason_str(reason).to_owned()),
            oom_killed: status.oom_killed,
        })
    }

    async fn kill(&mut self, process: Resource<ProcessHandle>) -> wasmtime::Result<()> {
        latest::sandbox::HostProcess::kill(self, process).await
    }

    async fn drop(&mut self, process: Resource<ProcessHandle>) -> wasmtime::Result<()> {
        latest::sandbox::HostProcess::drop(self, process).await
    }
}

/// The strings 0.1.0 documents for `kill-reason`.
fn kill_reason_str(reason: latest::sandbox::KillReason) -> &'static str {
    use latest::sandbox::KillReason as K;
    match reason {
        K::Timeout => "timeout",
        K::IdleTimeout => "idle-timeout",
        K::Cancelled => "cancelled",
        K::Requested => "requested",
    }
}

impl materializer::aac::plugin::archive::Host for SessionState<MaterializerWorld> {
    async fn read(&mut self, offset: u64, max: u32) -> wasmtime::Result<Result<Vec<u8>, String>> {
        super::materializer::aac::plugin::archive::Host::read(self, offset, max).await
    }
}

// ---- exports: 0.2.0 values handed to a 0.1.0 guest, and its answers read back ----

pub fn run_info(run: &latest::types::RunInfo) -> old::types::RunInfo {
    old::types::RunInfo {
        run_id: run.run_id.clone(),
        runtime: run.runtime.clone(),
        workspace_dir: run.workspace_dir.clone(),
        config_json: run.config_json.clone(),
    }
}

pub fn command_info(command: &latest::types::CommandInfo) -> old::types::CommandInfo {
    old::types::CommandInfo {
        command_id: command.command_id.clone(),
        sequence: command.sequence,
        prompt: command.prompt.clone(),
        payload_json: command.payload_json.clone(),
    }
}

pub fn plugin_info(info: old::types::PluginInfo) -> latest::types::PluginInfo {
    latest::types::PluginInfo {
        name: info.name,
        version: info.version,
        description: info.description,
    }
}

pub fn turn_result(result: old::types::TurnResult) -> latest::types::TurnResult {
    use latest::types::{FailureKind as L, TerminalStatus as S};
    use old::types::{FailureKind as O, TerminalStatus as OS};
    latest::types::TurnResult {
        status: match result.status {
            OS::Completed => S::Completed,
            OS::Failed => S::Failed,
            OS::Blocked => S::Blocked,
            OS::Cancelled => S::Cancelled,
        },
        failure_kind: result.failure_kind.map(|kind| match kind {
            O::AgentError => L::AgentError,
            O::ModelError => L::ModelError,
            O::AuthError => L::AuthError,
            O::TurnTimeout => L::TurnTimeout,
            O::BackendCrashed => L::BackendCrashed,
            O::BackendTimeout => L::BackendTimeout,
            O::ResourceExhausted => L::ResourceExhausted,
            O::OomKilled => L::OomKilled,
            O::SandboxLost => L::SandboxLost,
            O::ImageUnavailable => L::ImageUnavailable,
            O::ResourceBundle => L::ResourceBundle,
            O::LeaseLost => L::LeaseLost,
            O::SchemaInvalid => L::SchemaInvalid,
            O::HostError => L::HostError,
        }),
        message: result.message,
        thread_id: result.thread_id,
        turn_id: result.turn_id,
    }
}

/// A 0.2.0 bundle reference as 0.1.0 spells it: `kind` and `location` strings.
pub fn bundle_ref(
    bundle: &latest_materialize::BundleRef,
) -> materializer::exports::aac::plugin::materialize::BundleRef {
    let (kind, location) = match &bundle.kind {
        latest_materialize::BundleSource::Archive(location) => ("archive", location),
        latest_materialize::BundleSource::Http(location) => ("http", location),
    };
    materializer::exports::aac::plugin::materialize::BundleRef {
        kind: kind.to_owned(),
        location: location.clone(),
        sha256: bundle.sha256.clone(),
        size: bundle.size,
    }
}
