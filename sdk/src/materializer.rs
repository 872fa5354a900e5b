//! The [`Materializer`] trait and the glue behind [`export_materializer!`](crate::export_materializer).

use std::path::Path;

use crate::PluginInfo;
pub use crate::bindings::materializer::exports::aac::plugin::materialize::{
    BundleLimits, BundleRef, BundleSource, MaterializeError, Summary,
};

/// A resource-bundle materializer: writes a run's files into its workspace.
///
/// `workspace` is the only directory the host preopens for the call; everything must be written
/// below it. A local archive is read with [`crate::archive::Reader`]; a bundle over HTTP is
/// fetched with `wasi:http` from a host the operator granted.
pub trait Materializer: 'static {
    fn materialize(
        bundle: BundleRef,
        workspace: &Path,
        limits: BundleLimits,
    ) -> Result<Summary, MaterializeError>;

    /// What the host shows about this plugin. The default is the crate's name, version and
    /// description from `Cargo.toml`.
    fn describe(defaults: PluginInfo) -> PluginInfo {
        defaults
    }
}

impl MaterializeError {
    /// An error about the bundle as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            entry: None,
        }
    }

    /// An error about one entry of the bundle.
    pub fn at_entry(entry: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            entry: Some(entry.into()),
        }
    }
}

#[doc(hidden)]
pub fn materialize_with<M: Materializer>(
    bundle: BundleRef,
    workspace_dir: String,
    limits: BundleLimits,
) -> Result<Summary, MaterializeError> {
    M::materialize(bundle, Path::new(&workspace_dir), limits)
}

#[doc(hidden)]
pub fn describe_materializer_with_defaults<M: Materializer>(
    name: &str,
    version: &str,
    description: &str,
) -> PluginInfo {
    M::describe(PluginInfo {
        name: name.into(),
        version: version.into(),
        description: description.into(),
    })
}

/// Exports a [`Materializer`] implementation as the plugin's `materialize` interface.
#[macro_export]
macro_rules! export_materializer {
    ($materializer:ty) => {
        // Exports only exist in the wasm component; a native build (workspace tests, clippy) of the
        // plugin crate links without them.
        #[cfg(target_family = "wasm")]
        #[doc(hidden)]
        struct __AacMaterializerExport;

        #[cfg(target_family = "wasm")]
        impl $crate::__private::bindings::materializer::exports::aac::plugin::materialize::Guest
            for __AacMaterializerExport
        {
            fn describe() -> $crate::PluginInfo {
                $crate::__private::describe_materializer_with_defaults::<$materializer>(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                )
            }

            fn materialize(
                bundle: $crate::BundleRef,
                workspace_dir: String,
                limits: $crate::BundleLimits,
            ) -> Result<$crate::Summary, $crate::MaterializeError> {
                $crate::__private::materialize_with::<$materializer>(bundle, workspace_dir, limits)
            }
        }

        #[cfg(target_family = "wasm")]
        $crate::__private::bindings::materializer::export_materializer_world!(
            __AacMaterializerExport with_types_in $crate::__private::bindings::materializer
        );

        // Natively the materializer is still reachable, so its code is checked like the wasm build's.
        #[cfg(not(target_family = "wasm"))]
        const _: () = {
            let _ = <$materializer as $crate::Materializer>::materialize;
            let _ = <$materializer as $crate::Materializer>::describe;
        };
    };
}
