//! How the proxy turns a host name into addresses: once, itself, so the address it checks is the
//! address it connects to (no second lookup a rebinding DNS server could answer differently).

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The system resolver, with fixed answers for some names taking precedence (an operator's pins;
/// tests point a name at loopback this way).
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    fixed: Arc<BTreeMap<String, Vec<IpAddr>>>,
}

impl Resolver {
    /// Answers `name` with `addresses` instead of asking DNS.
    pub fn with_fixed(mut self, name: &str, addresses: Vec<IpAddr>) -> Self {
        Arc::make_mut(&mut self.fixed).insert(crate::policy::normalize(name), addresses);
        self
    }

    /// The addresses of `host` (a name or an IP literal) on `port`.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let host = crate::policy::normalize(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if let Some(fixed) = self.fixed.get(&host) {
            return Ok(fixed.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        Ok(tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect())
    }
}
