//! A materializer's exports, whatever contract it was built for (see `crate::guest` for backends):
//! the current bindings or the frozen 0.1.0 ones, behind calls in 0.2.0 types.

use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use crate::bindings::backend::aac::plugin::types::PluginInfo;
use crate::bindings::materializer::exports::aac::plugin::materialize as wit;
use crate::bindings::materializer::{Materializer, MaterializerPre};
use crate::bindings::{ContractVersion, since_v0_1_0};
use crate::state::{MaterializerWorld, SessionState};

type State = SessionState<MaterializerWorld>;
type Result<T, E> = std::result::Result<T, E>;

#[derive(Clone)]
pub enum MaterializerGuestPre {
    V0_2(MaterializerPre<State>),
    V0_1(since_v0_1_0::materializer::MaterializerPre<State>),
}

pub enum MaterializerGuest {
    V0_2(Materializer),
    V0_1(since_v0_1_0::materializer::Materializer),
}

impl MaterializerGuestPre {
    /// Links `component` for its contract `version`; the error says which step failed.
    pub fn new(
        version: ContractVersion,
        linkers: (&Linker<State>, &Linker<State>),
        component: &Component,
    ) -> Result<Self, (&'static str, wasmtime::Error)> {
        let (latest, v0_1) = linkers;
        match version {
            ContractVersion::V0_2 => {
                let pre = latest.instantiate_pre(component).map_err(|e| ("link", e))?;
                MaterializerPre::new(pre)
                    .map(Self::V0_2)
                    .map_err(|e| ("export", e))
            }
            ContractVersion::V0_1 => {
                let pre = v0_1.instantiate_pre(component).map_err(|e| ("link", e))?;
                since_v0_1_0::materializer::MaterializerPre::new(pre)
                    .map(Self::V0_1)
                    .map_err(|e| ("export", e))
            }
        }
    }

    pub async fn instantiate(
        &self,
        store: &mut Store<State>,
    ) -> wasmtime::Result<MaterializerGuest> {
        Ok(match self {
            Self::V0_2(pre) => MaterializerGuest::V0_2(pre.instantiate_async(store).await?),
            Self::V0_1(pre) => MaterializerGuest::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

impl MaterializerGuest {
    pub async fn describe(&self, store: &mut Store<State>) -> wasmtime::Result<PluginInfo> {
        match self {
            Self::V0_2(guest) => guest.aac_plugin_materialize().call_describe(store).await,
            Self::V0_1(guest) => Ok(since_v0_1_0::plugin_info(
                guest.aac_plugin_materialize().call_describe(store).await?,
            )),
        }
    }

    pub async fn materialize(
        &self,
        store: &mut Store<State>,
        bundle: &wit::BundleRef,
        workspace_dir: &str,
        limits: wit::BundleLimits,
    ) -> wasmtime::Result<Result<wit::Summary, wit::MaterializeError>> {
        match self {
            Self::V0_2(guest) => {
                guest
                    .aac_plugin_materialize()
                    .call_materialize(store, bundle, workspace_dir, limits)
                    .await
            }
            Self::V0_1(guest) => {
                use since_v0_1_0::materializer::exports::aac::plugin::materialize as old;
                let limits = old::BundleLimits {
                    max_files: limits.max_files,
                    max_bytes: limits.max_bytes,
                };
                let result = guest
                    .aac_plugin_materialize()
                    .call_materialize(
                        store,
                        &since_v0_1_0::bundle_ref(bundle),
                        workspace_dir,
                        limits,
                    )
                    .await?;
                Ok(result
                    .map(|summary| wit::Summary {
                        files: summary.files,
                        bytes: summary.bytes,
                    })
                    .map_err(|err| wit::MaterializeError {
                        message: err.message,
                        entry: err.entry,
                    }))
            }
        }
    }
}
