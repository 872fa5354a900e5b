//! What a materializer is asked to write: the plugin host's own description of a resource bundle.
//! The plugin host does not speak the manager protocol; the runner converts the wire type
//! (`aac_protocol::protocol::BundleRef`) into this one.

/// A bundle to materialize: how it is fetched (`kind`: `archive`, a local tar whose path is
/// `location`, or `http`, a URL) and what it must hash to and weigh (see docs/bundles.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub kind: String,
    pub location: String,
    pub sha256: Option<String>,
    pub size: Option<u64>,
}
