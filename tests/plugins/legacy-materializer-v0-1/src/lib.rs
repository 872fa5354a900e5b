//! A materializer written against the frozen `aac:plugin@0.1.0` contract: it reads the whole
//! archive through the 0.1.0 `archive.read` and writes `.materialized` into the workspace with
//! what 0.1.0 told it: `<kind> <bytes read>` (the kind is a string in 0.1.0).

// Only a wasm component: natively (workspace builds) the crate is empty.
#![cfg(target_family = "wasm")]

wit_bindgen::generate!({
    path: "../../../host/plugin-host/wit-0.1.0",
    world: "aac:plugin/materializer@0.1.0",
});

use aac::plugin::types::PluginInfo;
use exports::aac::plugin::materialize::{
    BundleLimits, BundleRef, Guest, MaterializeError, Summary,
};

struct Legacy;

impl Guest for Legacy {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "test-legacy-materializer-v0-1".into(),
            version: "0.1.0".into(),
            description: "built against aac:plugin@0.1.0".into(),
        }
    }

    fn materialize(
        bundle: BundleRef,
        workspace_dir: String,
        _limits: BundleLimits,
    ) -> Result<Summary, MaterializeError> {
        let mut read = 0u64;
        if bundle.kind == "archive" {
            loop {
                let chunk = aac::plugin::archive::read(read, 1 << 16).map_err(|message| {
                    MaterializeError {
                        message,
                        entry: None,
                    }
                })?;
                if chunk.is_empty() {
                    break;
                }
                read += chunk.len() as u64;
            }
        }
        let text = format!("{} {read}", bundle.kind);
        let marker = std::path::Path::new(&workspace_dir).join(".materialized");
        std::fs::write(&marker, &text).map_err(|err| MaterializeError {
            message: format!("writing the marker: {err}"),
            entry: Some(".materialized".into()),
        })?;
        Ok(Summary {
            files: 1,
            bytes: text.len() as u64,
        })
    }
}

export!(Legacy);
