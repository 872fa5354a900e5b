//! Exports `aac:plugin/adapter@9.9.9`: the host must refuse it, naming that version and the
//! versions it loads.

// Only a wasm component: natively (workspace builds) the crate is empty.
#![cfg(target_family = "wasm")]

wit_bindgen::generate!({
    inline: "
        package aac:plugin@9.9.9;

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
