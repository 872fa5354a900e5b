//! Exports `acme:widgets/render`: a fine component, but not an aac-host plugin.

// Only a wasm component: natively (workspace builds) the crate is empty.
#![cfg(target_family = "wasm")]

wit_bindgen::generate!({
    inline: "
        package acme:widgets@1.0.0;

        interface render {
            render: func(name: string) -> string;
        }

        world widget {
            export render;
        }
    ",
});

struct Widget;

impl exports::acme::widgets::render::Guest for Widget {
    fn render(name: String) -> String {
        format!("<{name}/>")
    }
}

export!(Widget);
