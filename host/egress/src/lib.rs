//! aac-egress owns a sandbox's only way out in `egress` network mode: an HTTP proxy the host runs on
//! the sandbox network's gateway address. It lets a connection out only when the host name asked
//! for matches the profile's allowlist ([`policy`]), resolves that name itself and connects only to
//! public addresses unless the allow entry says otherwise (so a name cannot be rebound to the host,
//! cloud metadata or another container). Every decision becomes a [`NetworkEvent`].
//!
//! It must not depend on Docker, wasmtime or the manager: the Docker driver starts it, the runner
//! turns its events into run events.

pub mod credential;
pub mod events;
mod gateway;
pub mod policy;
mod proxy;
mod request;
mod resolve;
mod sni;
mod splice;

pub use credential::{Credential, Credentials, HeaderTemplate, Upstream};
pub use events::{DroppedEvents, EventSink, NetworkEvent};
pub use policy::{AllowRule, Allowlist};
pub use proxy::{EgressProxy, ProxyOptions};
pub use resolve::Resolver;
