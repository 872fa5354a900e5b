//! The [`Materializer`] trait and the glue behind [`export_materializer!`](crate::export_materializer).

use std::path::Path;

pub use crate::bindings::materializer::exports::aac::plugin::materialize::{
    BundleRef, MaterializeError, Summary,
};

/// A resource-bundle materializer: writes a run's files into its workspace.
///
/// `workspace` is the only directory the host preopens for the call; everything must be written
/// below it.
pub trait Materializer: 'static {
    fn materialize(bundle: BundleRef, workspace: &Path) -> Result<Summary, MaterializeError>;
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
) -> Result<Summary, MaterializeError> {
    M::materialize(bundle, Path::new(&workspace_dir))
}

/// Exports a [`Materializer`] implementation as the plugin's `materialize` interface.
#[macro_export]
macro_rules! export_materializer {
    ($materializer:ty) => {
        #[doc(hidden)]
        struct __AacMaterializerExport;

        impl $crate::bindings::materializer::exports::aac::plugin::materialize::Guest
            for __AacMaterializerExport
        {
            fn materialize(
                bundle: $crate::BundleRef,
                workspace_dir: String,
            ) -> Result<$crate::Summary, $crate::MaterializeError> {
                $crate::__private::materialize_with::<$materializer>(bundle, workspace_dir)
            }
        }

        $crate::bindings::materializer::export_materializer_world!(
            __AacMaterializerExport with_types_in $crate::bindings::materializer
        );
    };
}
