//! Raw bindings generated from the crate's `wit/`. Private to the SDK (the export macros reach them
//! through `__private`): the SDK's traits, helpers and re-exports wrap them.

/// The `backend` world: imports `sandbox`, `events`, `log`; exports `adapter`.
pub mod backend {
    wit_bindgen::generate!({
        path: "wit",
        world: "aac:plugin/backend@0.2.1",
        pub_export_macro: true,
        default_bindings_module: "aac_sdk::__private::bindings::backend",
        export_macro_name: "export_backend_world",
        generate_all,
    });
}

/// The `materializer` world: imports `log`, `archive` and `modes`; exports `materialize`. Shared interfaces are reused from
/// the backend bindings so that a type means one thing across the SDK.
pub mod materializer {
    wit_bindgen::generate!({
        path: "wit",
        world: "aac:plugin/materializer@0.2.1",
        pub_export_macro: true,
        default_bindings_module: "aac_sdk::__private::bindings::materializer",
        export_macro_name: "export_materializer_world",
        with: {
            "aac:plugin/log@0.2.1": crate::bindings::backend::aac::plugin::log,
            "aac:plugin/types@0.2.1": crate::bindings::backend::aac::plugin::types,
        },
    });
}
