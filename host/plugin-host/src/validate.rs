//! Checks a plugin file before anything is compiled, and reads what it targets: its world and the
//! WIT version it was built for. Every error names the file and says what is wrong with it.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;
use wasmparser::{Parser, Payload, Validator, WasmFeatures};

use super::bindings::{WIT_PACKAGE, WIT_VERSION};

/// The kinds of plugin this host runs, one per WIT world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Backend,
    Materializer,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Backend => "backend",
            World::Materializer => "materializer",
        }
    }

    /// The interface a component of this world exports.
    fn export_interface(self) -> &'static str {
        match self {
            World::Backend => "adapter",
            World::Materializer => "materialize",
        }
    }
}

/// What a plugin file says about itself, read without compiling it.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentShape {
    pub world: World,
    /// The `aac:plugin` version the component was built against.
    pub wit_version: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub size_bytes: u64,
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

/// Validates `bytes` (read from `path`) as an aac-host plugin component.
pub fn check_component(path: &Path, bytes: &[u8]) -> Result<ComponentShape> {
    let file = path.display();
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        let start: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        bail!(
            "{file} is not a WebAssembly file: it starts with [{}] instead of the `\\0asm` header",
            start.join(" ")
        );
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        bail!(
            "{file} is a core WebAssembly module, not a component: build the plugin with \
             `cargo build --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
        );
    }
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|err| {
            let hint = if err.message().contains("unexpected end") {
                " (the file looks truncated)"
            } else {
                ""
            };
            anyhow::anyhow!("{file} is not a valid WebAssembly component{hint}: {err}")
        })?;

    let (imports, exports) = top_level_names(bytes)?;
    let (world, wit_version) = identify_world(&exports).ok_or_else(|| {
        anyhow::anyhow!(
            "{file} is a component of another world: it exports neither `{WIT_PACKAGE}/adapter` (backend) \
             nor `{WIT_PACKAGE}/materialize` (materializer); its exports are [{}]",
            exports.join(", ")
        )
    })?;
    if !compatible(&wit_version) {
        bail!(
            "{file} was built for {WIT_PACKAGE}@{wit_version}, but this host speaks {WIT_PACKAGE}@{WIT_VERSION}: \
             rebuild the plugin against aac-sdk for {WIT_VERSION}"
        );
    }
    for import in &imports {
        if let Some(version) = aac_version(import)
            && !compatible(version)
        {
            bail!(
                "{file} imports `{import}`, built for {WIT_PACKAGE}@{version}, but this host speaks \
                 {WIT_PACKAGE}@{WIT_VERSION}"
            );
        }
    }
    Ok(ComponentShape {
        world,
        wit_version,
        imports,
        exports,
        size_bytes: bytes.len() as u64,
    })
}

/// The names a component imports and exports at its top level (not those of nested components).
fn top_level_names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>)> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

fn identify_world(exports: &[String]) -> Option<(World, String)> {
    [World::Backend, World::Materializer]
        .into_iter()
        .find_map(|world| {
            let prefix = format!("{WIT_PACKAGE}/{}@", world.export_interface());
            exports
                .iter()
                .find_map(|name| name.strip_prefix(&prefix))
                .map(|version| (world, version.to_string()))
        })
}

/// The `aac:plugin` version of an import name like `aac:plugin/log@0.1.0`.
fn aac_version(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(WIT_PACKAGE)?.strip_prefix('/')?;
    rest.split_once('@').map(|(_, version)| version)
}

/// Semver compatibility as the component model applies it: same major, and for 0.x the same minor.
fn compatible(version: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (parse(version), parse(WIT_VERSION)) {
        (Some((0, minor)), Some((0, host_minor))) => minor == host_minor,
        (Some((major, _)), Some((host_major, _))) => major == host_major,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_component_model_semver() {
        assert!(compatible("0.1.0"));
        assert!(compatible("0.1.7"));
        assert!(!compatible("0.2.0"));
        assert!(!compatible("1.0.0"));
        assert!(!compatible("garbage"));
    }

    #[test]
    fn rejects_non_wasm_and_core_modules() {
        let path = Path::new("p.wasm");
        let err = check_component(path, b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.wasm is not a WebAssembly file"), "{err}");
        let core = [b"\0asm".as_slice(), &CORE_MODULE_VERSION].concat();
        let err = check_component(path, &core).unwrap_err().to_string();
        assert!(
            err.contains("core WebAssembly module, not a component"),
            "{err}"
        );
    }
}
