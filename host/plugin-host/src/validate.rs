//! Checks a plugin file before anything is compiled, and reads what it targets: its world and the
//! WIT version it was built for. Every error names the file and says what is wrong with it.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;
use wasmparser::{Parser, Payload, Validator, WasmFeatures};

use super::bindings::{ContractVersion, WIT_PACKAGE};

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
    /// The `aac:plugin` version the component was built against, as it names it (e.g. `0.1.0`).
    pub wit_version: String,
    /// The contract the host serves it with (0.1.x plugins through the 0.1.0 adapter).
    pub contract: ContractVersion,
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
    let contract = ContractVersion::of(&wit_version).ok_or_else(|| {
        anyhow::anyhow!(
            "{file} was built for {WIT_PACKAGE}@{wit_version}, which this host does not load: it \
             loads {WIT_PACKAGE} {} (rebuild the plugin against an aac-sdk for one of them)",
            ContractVersion::supported_list()
        )
    })?;
    one_contract(&file.to_string(), &wit_version, contract, &imports)?;
    Ok(ComponentShape {
        world,
        wit_version,
        contract,
        imports,
        exports,
        size_bytes: bytes.len() as u64,
    })
}

/// One contract per component: a 0.2.0 adapter importing a 0.1.0 sandbox would be served half by
/// the adapter, half not. `Err` names the first import of another version.
fn one_contract(
    file: &str,
    wit_version: &str,
    contract: ContractVersion,
    imports: &[String],
) -> Result<()> {
    for import in imports {
        if let Some(version) = aac_version(import)
            && ContractVersion::of(version) != Some(contract)
        {
            bail!(
                "{file} exports {WIT_PACKAGE}@{wit_version} but imports `{import}`: a plugin must \
                 be built against one contract version (this host loads {WIT_PACKAGE} {})",
                ContractVersion::supported_list()
            );
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_mixing_contract_versions_is_refused() {
        let imports = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let same = imports(&["aac:plugin/sandbox@0.2.0", "wasi:cli/stdin@0.2.6"]);
        assert!(one_contract("p.wasm", "0.2.0", ContractVersion::V0_2, &same).is_ok());
        let patch = imports(&["aac:plugin/log@0.1.3"]);
        assert!(one_contract("p.wasm", "0.1.0", ContractVersion::V0_1, &patch).is_ok());
        let mixed = imports(&["aac:plugin/events@0.2.0", "aac:plugin/sandbox@0.1.0"]);
        let err = one_contract("p.wasm", "0.2.0", ContractVersion::V0_2, &mixed)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.wasm exports aac:plugin@0.2.0 but imports `aac:plugin/sandbox@0.1.0`"),
            "{err}"
        );
        let unknown = imports(&["aac:plugin/log@9.9.9"]);
        assert!(one_contract("p.wasm", "0.2.0", ContractVersion::V0_2, &unknown).is_err());
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
