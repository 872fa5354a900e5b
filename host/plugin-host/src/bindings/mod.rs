//! Host bindings generated from `wit/`, the current plugin contract (`aac:plugin@0.2.1`), and
//! from frozen copies of older contracts the host keeps loading ([`since_v0_1_0`]).
//!
//! Like Zed's extension host: the host logic is written once against the current bindings; each
//! older version has its own `bindgen!` module and an adapter ([`since_v0_1_0`]) that maps its
//! calls and types onto the current ones. Which bindings a component gets is decided by the
//! version of the `aac:plugin` interfaces it exports ([`ContractVersion::of`]).

pub mod since_v0_1_0;

use serde::Serialize;

/// The `backend` world.
pub mod backend {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "aac:plugin/backend",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "aac:plugin/sandbox.process": aac_sandbox::ProcessHandle,
        },
    });
}

/// The `materializer` world.
pub mod materializer {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "aac:plugin/materializer",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "aac:plugin/log": super::backend::aac::plugin::log,
            "aac:plugin/types": super::backend::aac::plugin::types,
        },
    });
}

/// The WIT package every plugin contract version lives in.
pub const WIT_PACKAGE: &str = "aac:plugin";
/// The contract new plugins target.
/// A 0.2.0 plugin links against it unchanged: 0.2.1 only added `modes` to the materializer world,
/// and wasmtime's linker matches `@0.2.0` imports and exports with `@0.2.1` definitions (same
/// 0.x minor). [`ContractVersion::V0_2`] is that whole 0.2 line.
pub const WIT_VERSION: &str = "0.2.1";

/// The contract versions this host loads, newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ContractVersion {
    #[serde(rename = "0.2.0")]
    V0_2,
    #[serde(rename = "0.1.0")]
    V0_1,
}

impl ContractVersion {
    pub const ALL: [ContractVersion; 2] = [ContractVersion::V0_2, ContractVersion::V0_1];

    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_2 => "0.2.0",
            ContractVersion::V0_1 => "0.1.0",
        }
    }

    /// The contract a component built for `aac:plugin@{version}` speaks, with the component
    /// model's semver rule: same major, and for 0.x the same minor (0.1.7 is a 0.1.0 plugin).
    pub fn of(version: &str) -> Option<Self> {
        let (major, minor) = major_minor(version)?;
        Self::ALL.into_iter().find(|known| {
            let (known_major, known_minor) =
                major_minor(known.as_str()).expect("known versions parse");
            major == known_major && (major != 0 || minor == known_minor)
        })
    }

    /// `0.2.0, 0.1.0`, for messages.
    pub fn supported_list() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    // A patch part, when there is one, must be a number too (`0.2.x` is not a version).
    match parts.next() {
        Some(patch) if patch.split(['-', '+']).next()?.parse::<u64>().is_err() => None,
        _ => Some((major, minor)),
    }
}

#[cfg(test)]
mod tests {
    use super::ContractVersion;

    #[test]
    fn versions_follow_component_model_semver() {
        assert_eq!(ContractVersion::of("0.2.0"), Some(ContractVersion::V0_2));
        assert_eq!(ContractVersion::of("0.2.3"), Some(ContractVersion::V0_2));
        assert_eq!(ContractVersion::of("0.1.0"), Some(ContractVersion::V0_1));
        assert_eq!(ContractVersion::of("0.1.7"), Some(ContractVersion::V0_1));
        assert_eq!(ContractVersion::of("0.3.0"), None);
        assert_eq!(ContractVersion::of("9.9.9"), None);
        assert_eq!(ContractVersion::of("1.0.0"), None);
        assert_eq!(ContractVersion::of("garbage"), None);
        assert_eq!(ContractVersion::of("0.2.x"), None);
    }
}
