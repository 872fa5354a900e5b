//! Writes `.materialized` (the bundle's location) into the workspace.

use std::path::Path;

use aac_sdk::{BundleLimits, BundleRef, MaterializeError, Materializer, Summary};

struct Touch;

impl Materializer for Touch {
    fn materialize(
        bundle: BundleRef,
        workspace: &Path,
        _limits: BundleLimits,
    ) -> Result<Summary, MaterializeError> {
        let marker = workspace.join(".materialized");
        std::fs::write(&marker, bundle.location.as_bytes())
            .map_err(|err| MaterializeError::at_entry(".materialized", err.to_string()))?;
        Ok(Summary {
            files: 1,
            bytes: bundle.location.len() as u64,
        })
    }
}

aac_sdk::export_materializer!(Touch);
