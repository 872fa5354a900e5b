//! Host bindings generated from `wit/`, the single source of truth for the plugin contract.

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

/// The WIT package version this host speaks.
pub const WIT_PACKAGE: &str = "aac:plugin";
pub const WIT_VERSION: &str = "0.1.0";
