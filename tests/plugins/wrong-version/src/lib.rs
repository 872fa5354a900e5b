//! Exports `aac:plugin/adapter@0.2.0`: the host must refuse it and name both versions.

// Only a wasm component: natively (workspace builds) the crate is empty.
#![cfg(target_family = "wasm")]

wit_bindgen::generate!({
    inline: "
        package aac:plugin@0.2.0;

        interface adapter {
            describe: func() -> string;
        }

        world backend {
            export adapter;
        }
    ",
});

struct Future;

impl exports::aac::plugin::adapter::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(Future);
