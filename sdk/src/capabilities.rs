//! Declaring what a plugin needs from the host, embedded in the component itself.

/// What a plugin asks of the host, beyond its WIT imports. Built by
/// [`declare_capabilities!`](crate::declare_capabilities); written into the component as JSON at
/// compile time.
#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    /// Hosts the plugin may reach with `wasi:http`: `"host"`, `"host:port"`, `"*.domain"` or
    /// `"*"`, narrowed by the operator's grant.
    pub http: &'static [&'static str],
    /// Host environment variables the plugin may read.
    pub env: &'static [&'static str],
}

impl Capabilities {
    /// Nothing: what a plugin that declares nothing gets.
    pub const NONE: Capabilities = Capabilities {
        http: &[],
        env: &[],
    };

    /// Bytes of [`json`](Self::json)'s output.
    pub const fn json_len(&self) -> usize {
        // {"http":[…],"env":[…]}
        let fixed = r#"{"http":[],"env":[]}"#.len();
        fixed + list_len(self.http) + list_len(self.env)
    }

    /// The declaration as JSON; `N` must be [`json_len`](Self::json_len). A value with a quote, a
    /// backslash or a control character fails the build.
    pub const fn json<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        let mut at = put(&mut out, 0, br#"{"http":["#);
        at = put_list(&mut out, at, self.http);
        at = put(&mut out, at, br#"],"env":["#);
        at = put_list(&mut out, at, self.env);
        at = put(&mut out, at, b"]}");
        assert!(at == N, "capabilities: wrong length");
        out
    }
}

const fn list_len(items: &[&str]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < items.len() {
        // quotes, and a comma before every item but the first
        len += items[i].len() + 2 + if i > 0 { 1 } else { 0 };
        i += 1;
    }
    len
}

const fn put(out: &mut [u8], mut at: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[at] = bytes[i];
        at += 1;
        i += 1;
    }
    at
}

const fn put_list(out: &mut [u8], mut at: usize, items: &[&str]) -> usize {
    let mut i = 0;
    while i < items.len() {
        if i > 0 {
            at = put(out, at, b",");
        }
        let bytes = items[i].as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            assert!(
                bytes[j] != b'"' && bytes[j] != b'\\' && bytes[j] >= 0x20,
                "capabilities: a host or variable name with a quote, backslash or control character"
            );
            j += 1;
        }
        at = put(out, at, b"\"");
        at = put(out, at, bytes);
        at = put(out, at, b"\"");
        i += 1;
    }
    at
}

/// Declares the capabilities the plugin needs, in a custom section named `aac:capabilities` of
/// the component. The host grants a capability only if it is declared here **and** granted by the
/// operator in `aac.toml`; a plugin that declares nothing gets nothing. Keys are the fields of
/// [`Capabilities`] (`http`, `env`); an unknown key does not compile.
///
/// ```ignore
/// aac_sdk::declare_capabilities!(http: ["*"], env: ["LANG"]);
/// ```
#[macro_export]
macro_rules! declare_capabilities {
    ($($key:ident: [$($value:expr),* $(,)?]),* $(,)?) => {
        #[doc(hidden)]
        const __AAC_DECLARED: $crate::Capabilities = $crate::Capabilities {
            $($key: &[$($value),*],)*
            ..$crate::Capabilities::NONE
        };
        #[doc(hidden)]
        #[used]
        #[unsafe(link_section = "aac:capabilities")]
        static __AAC_CAPABILITIES: [u8; __AAC_DECLARED.json_len()] = __AAC_DECLARED.json();
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_json() {
        const C: Capabilities = Capabilities {
            http: &["*", "api.example:443"],
            ..Capabilities::NONE
        };
        let json: [u8; C.json_len()] = C.json();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"http": ["*", "api.example:443"], "env": []})
        );
        const E: Capabilities = Capabilities::NONE;
        assert_eq!(&E.json::<{ E.json_len() }>(), br#"{"http":[],"env":[]}"#);
    }
}
