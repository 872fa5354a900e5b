//! An `egress` sandbox's network: a Docker `internal` network of its own (no route out), the
//! host's egress proxy listening on its gateway address, and the firewall rules that leave the
//! proxy's port as the only thing on this host the sandbox reaches.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, anyhow};
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::InspectNetworkOptions;

use super::deadline::{Call, bounded};
use super::firewall::{self, Firewall};
use super::{DockerDriver, labels};
use aac_egress::{EgressProxy, ProxyOptions};
use aac_sandbox::EgressSpec;

/// A live egress network; [`EgressNetwork::close`] undoes it (the caller removes the network).
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

    /// Stops the proxy and deletes the firewall rules.
    pub async fn close(&mut self) {
        self.proxy.stop();
        self.firewall.remove().await;
    }
}

impl DockerDriver {
    /// Creates the network, starts its proxy and fences it in. On failure nothing is left behind.
    pub(super) async fn open_egress(&self, spec: &EgressSpec) -> Result<EgressNetwork> {
        firewall::check().await?;
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
                (labels::RUNNER.to_string(), self.runner_id.clone()),
                (labels::OWNER.to_string(), labels::owner()),
            ])),
            ..Default::default()
        };
        bounded(
            Call::CreateNetwork,
            &format!("network {name}"),
            self.docker.create_network(request),
        )
        .await
        .with_context(|| format!("could not create egress network {name}"))?;
        match self.fence(&name, &bridge, spec).await {
            Ok(network) => Ok(network),
            Err(err) => {
                let _ = bounded(
                    Call::RemoveNetwork,
                    &format!("network {name}"),
                    self.docker.remove_network(&name),
                )
                .await;
                Err(err)
            }
        }
    }

    async fn fence(&self, name: &str, bridge: &str, spec: &EgressSpec) -> Result<EgressNetwork> {
        let inspected = bounded(
            Call::InspectNetwork,
            &format!("network {name}"),
            self.docker
                .inspect_network(name, None::<InspectNetworkOptions>),
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
        let proxy = EgressProxy::start(ProxyOptions {
            listen: SocketAddr::new(gateway, 0),
            allow: spec.allow.clone(),
            events: spec.events.clone(),
            resolver: spec.resolver.clone(),
            credentials: spec.credentials.clone(),
        })
        .await?;
        let firewall = Firewall::install(name, bridge, gateway, proxy.address().port()).await?;
        tracing::debug!(network = name, proxy = %proxy.address(), "egress network ready");
        Ok(EgressNetwork {
            name: name.to_string(),
            proxy,
            firewall,
        })
    }
}
