//! An `egress` sandbox's network: a Docker `internal` network of its own (no route out), the
//! host's egress proxy listening on its gateway address, and the firewall rules that leave the
//! proxy's port as the only thing on this host the sandbox reaches.
//!
//! A network is made in two steps so the slow one can happen ahead of time (see `egress_stock`):
//! [`prepare`] creates the network, binds the proxy's listener and installs the rules — no run's
//! policy or credentials are involved — and [`ReadyNetwork::activate`] starts the proxy on that
//! listener with one run's policy. A network serves one sandbox and is torn down after it, never
//! reused.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::InspectNetworkOptions;

use super::deadline::{Call, bounded};
use super::firewall::{self, Firewall};
use super::labels;
use aac_egress::{EgressProxy, ProxyOptions};
use aac_sandbox::EgressSpec;

/// A network made ready: created, its proxy's listener bound on the gateway address (not yet
/// accepting), its firewall rules in place. It carries no policy until [`activate`](Self::activate).
pub(super) struct ReadyNetwork {
    name: String,
    listener: std::net::TcpListener,
    firewall: Firewall,
}

/// A live egress network; [`EgressNetwork::teardown`] undoes it.
pub(super) struct EgressNetwork {
    pub name: String,
    pub proxy: EgressProxy,
    firewall: Firewall,
}

impl EgressNetwork {
    /// The proxy's URL, as the sandbox's `HTTP(S)_PROXY`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy.address())
    }

    /// Proxy settings for the sandbox's environment: every tool that honours them goes through the
    /// proxy; only loopback is exempt.
    pub fn env(&self) -> Vec<(String, String)> {
        let url = self.proxy_url();
        // The gateway address too: the credential gateway's routes are served there directly.
        let no_proxy = format!("localhost,127.0.0.1,::1,{}", self.gateway());
        vec![
            ("HTTP_PROXY".into(), url.clone()),
            ("HTTPS_PROXY".into(), url.clone()),
            ("http_proxy".into(), url.clone()),
            ("https_proxy".into(), url.clone()),
            ("ALL_PROXY".into(), url.clone()),
            ("all_proxy".into(), url),
            ("NO_PROXY".into(), no_proxy.clone()),
            ("no_proxy".into(), no_proxy),
        ]
    }

    /// The gateway address: where the sandbox reaches this host (the proxy only).
    pub fn gateway(&self) -> IpAddr {
        self.proxy.address().ip()
    }

    /// Stops the proxy, deletes the firewall rules, then the network. Only once the sandbox's
    /// container is gone: the rules are what keeps it from this host.
    pub async fn teardown(mut self, docker: &Docker) {
        self.proxy.stop();
        self.firewall.remove().await;
        remove_network(docker, &self.name).await;
    }
}

impl ReadyNetwork {
    /// Starts the proxy on this network's listener with one run's policy. On failure the network
    /// is torn down.
    pub async fn activate(self, spec: &EgressSpec, docker: &Docker) -> Result<EgressNetwork> {
        let Self {
            name,
            listener,
            mut firewall,
        } = self;
        match serve(listener, spec) {
            Ok(proxy) => Ok(EgressNetwork {
                name,
                proxy,
                firewall,
            }),
            Err(err) => {
                firewall.remove().await;
                remove_network(docker, &name).await;
                Err(err.context(format!(
                    "could not serve the egress proxy of network {name}"
                )))
            }
        }
    }

    /// Deletes the rules, then the network (a ready network never had a container).
    pub async fn teardown(mut self, docker: &Docker) {
        drop(self.listener);
        self.firewall.remove().await;
        remove_network(docker, &self.name).await;
    }
}

fn serve(listener: std::net::TcpListener, spec: &EgressSpec) -> Result<EgressProxy> {
    let address = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    EgressProxy::serve(
        listener,
        ProxyOptions {
            listen: address,
            allow: spec.allow.clone(),
            events: spec.events.clone(),
            resolver: spec.resolver.clone(),
            credentials: spec.credentials.clone(),
        },
    )
}

/// Creates an internal network, binds the proxy's listener on its gateway address and fences it
/// in. On failure nothing is left behind.
pub(super) async fn prepare(docker: &Docker, runner_id: &str) -> Result<ReadyNetwork> {
    let started = Instant::now();
    firewall::check().await?;
    let checked = started.elapsed();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("aac-{id}");
    // Named by us (at most 15 bytes, the kernel's limit) so the rules can name it up front.
    let bridge = format!("aacx{}", &id[..11]);
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        internal: Some(true),
        options: Some(HashMap::from([
            ("com.docker.network.bridge.name".to_string(), bridge.clone()),
            (
                "com.docker.network.bridge.enable_icc".to_string(),
                "false".to_string(),
            ),
        ])),
        labels: Some(HashMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::RUNNER.to_string(), runner_id.to_string()),
            (labels::OWNER.to_string(), labels::owner()),
        ])),
        ..Default::default()
    };
    bounded(
        Call::CreateNetwork,
        &format!("network {name}"),
        docker.create_network(request),
    )
    .await
    .with_context(|| format!("could not create egress network {name}"))?;
    let created = started.elapsed();
    match fence(docker, &name, &bridge).await {
        Ok((ready, inspected, bound)) => {
            tracing::debug!(
                network = %name,
                firewall_check = ?checked,
                create = ?(created - checked),
                inspect = ?inspected,
                bind = ?bound,
                total = ?started.elapsed(),
                "egress network ready"
            );
            Ok(ready)
        }
        Err(err) => {
            remove_network(docker, &name).await;
            Err(err)
        }
    }
}

/// Binds the listener on `name`'s gateway and installs the rules; with how long the inspection
/// and the bind took (the rest is the firewall's).
async fn fence(
    docker: &Docker,
    name: &str,
    bridge: &str,
) -> Result<(ReadyNetwork, std::time::Duration, std::time::Duration)> {
    let started = Instant::now();
    let inspected = bounded(
        Call::InspectNetwork,
        &format!("network {name}"),
        docker.inspect_network(name, None::<InspectNetworkOptions>),
    )
    .await
    .with_context(|| format!("could not inspect egress network {name}"))?;
    let gateway: IpAddr = inspected
        .ipam
        .and_then(|ipam| ipam.config)
        .into_iter()
        .flatten()
        .find_map(|config| config.gateway?.parse().ok())
        .ok_or_else(|| anyhow!("egress network {name} has no IPv4 gateway address"))?;
    let inspect = started.elapsed();
    let listen = SocketAddr::new(gateway, 0);
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .with_context(|| format!("could not listen on {listen} for the egress proxy"))?;
    let port = listener.local_addr()?.port();
    let bind = started.elapsed() - inspect;
    let firewall = Firewall::install(name, bridge, gateway, port).await?;
    Ok((
        ReadyNetwork {
            name: name.to_string(),
            listener,
            firewall,
        },
        inspect,
        bind,
    ))
}

async fn remove_network(docker: &Docker, name: &str) {
    match bounded(
        Call::RemoveNetwork,
        &format!("network {name}"),
        docker.remove_network(name),
    )
    .await
    {
        Ok(()) => {}
        Err(err) if err.is_not_found() => {}
        Err(err) => {
            tracing::warn!(network = %name, error = %err, "could not remove an egress network; the reaper will")
        }
    }
}
