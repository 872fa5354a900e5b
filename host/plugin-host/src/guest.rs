//! A backend plugin's exports, whatever contract it was built for: the current bindings or the
//! frozen 0.1.0 ones, behind one set of calls in 0.2.0 types. The rest of the host never sees the
//! difference.

use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceAny};

use crate::bindings::backend::aac::plugin::types::{
    CommandInfo, PluginInfo, RunInfo, TerminalStatus, TurnResult,
};
use crate::bindings::backend::exports::aac::plugin::adapter::{StartError, StartFailure};
use crate::bindings::backend::{Backend, BackendPre};
use crate::bindings::{ContractVersion, since_v0_1_0};
use crate::state::{BackendWorld, SessionState};
use aac_protocol::outcome::{FailureKind, TurnOutcome};

type State = SessionState<BackendWorld>;

/// A backend component linked and ready to instantiate.
#[derive(Clone)]
pub enum BackendGuestPre {
    V0_2(BackendPre<State>),
    V0_1(since_v0_1_0::backend::BackendPre<State>),
}

/// An instantiated backend component.
pub enum BackendGuest {
    V0_2(Backend),
    V0_1(since_v0_1_0::backend::Backend),
}

/// A `start` the plugin refused, as the run's outcome minus who refused.
pub struct StartRefused {
    pub status: TerminalStatus,
    pub failure_kind: Option<FailureKind>,
    pub message: String,
}

impl StartRefused {
    /// The run's outcome, the message prefixed with `who` (the plugin).
    pub fn outcome(self, who: impl std::fmt::Display) -> TurnOutcome {
        let message = format!("{who} refused to start the session: {}", self.message);
        match self.status {
            TerminalStatus::Blocked => TurnOutcome::blocked(message),
            _ => TurnOutcome::failed(
                self.failure_kind.unwrap_or(FailureKind::AgentError),
                message,
            ),
        }
    }
}

impl BackendGuestPre {
    /// Links `component` for the contract `version` it was built for. The error is the linker's or
    /// the export check's, to be prefixed by the caller.
    pub fn new(
        version: ContractVersion,
        linkers: (&Linker<State>, &Linker<State>),
        component: &Component,
    ) -> Result<Self, (&'static str, wasmtime::Error)> {
        let (latest, v0_1) = linkers;
        match version {
            ContractVersion::V0_2 => {
                let pre = latest.instantiate_pre(component).map_err(|e| ("link", e))?;
                BackendPre::new(pre)
                    .map(Self::V0_2)
                    .map_err(|e| ("export", e))
            }
            ContractVersion::V0_1 => {
                let pre = v0_1.instantiate_pre(component).map_err(|e| ("link", e))?;
                since_v0_1_0::backend::BackendPre::new(pre)
                    .map(Self::V0_1)
                    .map_err(|e| ("export", e))
            }
        }
    }

    pub async fn instantiate(&self, store: &mut Store<State>) -> wasmtime::Result<BackendGuest> {
        Ok(match self {
            Self::V0_2(pre) => BackendGuest::V0_2(pre.instantiate_async(store).await?),
            Self::V0_1(pre) => BackendGuest::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

impl BackendGuest {
    pub async fn describe(&self, store: &mut Store<State>) -> wasmtime::Result<PluginInfo> {
        match self {
            Self::V0_2(guest) => guest.aac_plugin_adapter().call_describe(store).await,
            Self::V0_1(guest) => Ok(since_v0_1_0::plugin_info(
                guest.aac_plugin_adapter().call_describe(store).await?,
            )),
        }
    }

    /// `session.start`; the inner error is the plugin's refusal. Its strings are not bounded
    /// here: the caller cuts them.
    pub async fn start(
        &self,
        store: &mut Store<State>,
        run: &RunInfo,
    ) -> wasmtime::Result<Result<ResourceAny, StartRefused>> {
        Ok(match self {
            Self::V0_2(guest) => guest
                .aac_plugin_adapter()
                .session()
                .call_start(store, run)
                .await?
                .map_err(refused),
            // 0.1.0 has no failure kind: a refusal reads as `backend-crashed`, as 0.1.0 documents.
            Self::V0_1(guest) => guest
                .aac_plugin_adapter()
                .session()
                .call_start(store, &since_v0_1_0::run_info(run))
                .await?
                .map_err(|message| StartRefused {
                    status: TerminalStatus::Failed,
                    failure_kind: Some(FailureKind::BackendCrashed),
                    message,
                }),
        })
    }

    pub async fn run_turn(
        &self,
        store: &mut Store<State>,
        session: ResourceAny,
        command: &CommandInfo,
    ) -> wasmtime::Result<TurnResult> {
        match self {
            Self::V0_2(guest) => {
                guest
                    .aac_plugin_adapter()
                    .session()
                    .call_run_turn(store, session, command)
                    .await
            }
            Self::V0_1(guest) => Ok(since_v0_1_0::turn_result(
                guest
                    .aac_plugin_adapter()
                    .session()
                    .call_run_turn(store, session, &since_v0_1_0::command_info(command))
                    .await?,
            )),
        }
    }

    pub async fn close(
        &self,
        store: &mut Store<State>,
        session: ResourceAny,
    ) -> wasmtime::Result<()> {
        match self {
            Self::V0_2(guest) => {
                guest
                    .aac_plugin_adapter()
                    .session()
                    .call_close(store, session)
                    .await
            }
            Self::V0_1(guest) => {
                guest
                    .aac_plugin_adapter()
                    .session()
                    .call_close(store, session)
                    .await
            }
        }
    }
}

fn refused(error: StartError) -> StartRefused {
    let (status, failure_kind) = match error.kind {
        StartFailure::ConfigInvalid => (TerminalStatus::Failed, Some(FailureKind::ConfigInvalid)),
        StartFailure::Blocked => (TerminalStatus::Blocked, None),
        StartFailure::AuthError => (TerminalStatus::Failed, Some(FailureKind::AuthError)),
        StartFailure::AgentError => (TerminalStatus::Failed, Some(FailureKind::AgentError)),
    };
    StartRefused {
        status,
        failure_kind,
        message: error.message,
    }
}
