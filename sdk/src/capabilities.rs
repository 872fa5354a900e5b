//! Declaring what a plugin needs from the host, embedded in the component itself.

/// Declares the capabilities the plugin needs, as JSON in a custom section named
/// `aac:capabilities` of the component. The host grants a capability only if it is declared here
/// **and** granted by the operator in `aac.toml`; a plugin that declares nothing gets nothing.
///
/// Keys: `http` (hosts the plugin may reach: `"host"`, `"host:port"`, `"*.domain"` or `"*"`, to be
/// narrowed by the operator's grant) and `env` (host environment variables it may read).
///
/// ```ignore
/// aac_sdk::declare_capabilities!(br#"{"http": ["*"], "env": []}"#);
/// ```
#[macro_export]
macro_rules! declare_capabilities {
    ($json:literal) => {
        #[doc(hidden)]
        #[used]
        #[unsafe(link_section = "aac:capabilities")]
        static __AAC_CAPABILITIES: [u8; $json.len()] = *$json;
    };
}
