//! A materializer written against a frozen copy of `aac:plugin@0.2.0` (its own `wit/`, never
//! edited): it imports `log@0.2.0` and `archive@0.2.0` and exports `materialize@0.2.0`, which a
//! host on 0.2.1 must still link (component-model semver). It reads the whole archive through
//! `archive.read` (so the host's hash check passes) and writes `.materialized` holding the
//! bundle's location and the archive's size.

wit_bindgen::generate!({
    path: "wit",
    world: "aac:plugin/materializer@0.2.0",
});

use aac::plugin::{archive, log};
use exports::aac::plugin::materialize::{
    BundleLimits, BundleRef, BundleSource, Guest, MaterializeError, Summary,
};

struct Frozen;

impl Guest for Frozen {
    fn describe() -> aac::plugin::types::PluginInfo {
        aac::plugin::types::PluginInfo {
            name: "test-materializer-v0-2-0".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "built against aac:plugin@0.2.0".into(),
        }
    }

    fn materialize(
        bundle: BundleRef,
        workspace_dir: String,
        _limits: BundleLimits,
    ) -> Result<Summary, MaterializeError> {
        let fail = |message: String| MaterializeError {
            message,
            entry: None,
        };
        let (BundleSource::Archive(location) | BundleSource::Http(location)) = &bundle.kind;
        let mut size = 0u64;
        loop {
            let chunk = archive::read(size, 1 << 20).map_err(fail)?;
            if chunk.is_empty() {
                break;
            }
            size += chunk.len() as u64;
        }
        log::log(log::Level::Info, &format!("read {size} bytes"));
        let marker = format!("{location} {size}");
        std::fs::write(format!("{workspace_dir}/.materialized"), &marker)
            .map_err(|err| fail(err.to_string()))?;
        Ok(Summary {
            files: 1,
            bytes: marker.len() as u64,
        })
    }
}

export!(Frozen);
