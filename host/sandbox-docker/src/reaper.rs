//! Start-up clean-up: removes containers left behind by a crashed host (running or stuck in
//! Created), and any managed container past its expiry.

use std::collections::HashMap;
use std::time::SystemTime;

use anyhow::{Context, Result};
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use futures::StreamExt;
use tracing::{info, warn};

use super::deadline::{Call, bounded};
use super::{DockerDriver, firewall, labels};

/// Containers removed at once: a wedged one costs its removal deadline, not the others' turn.
const PARALLEL_REMOVALS: usize = 8;

impl DockerDriver {
    /// Removes every managed container whose host process is gone (whatever its runner id: the
    /// default runner id is random, so a restarted host would never find its own), this runner's
    /// containers without an owner, and every expired one. Returns how many were removed.
    /// Containers of a live host process (another `aac-host` on this machine) are kept.
    pub async fn reap_orphans(&self, runner_id: &str) -> Result<usize> {
        let now = SystemTime::now();
        let removed = self
            .remove_managed(|container_labels| {
                let owner = container_labels.get(labels::OWNER);
                let ours =
                    container_labels.get(labels::RUNNER).map(String::as_str) == Some(runner_id);
                let orphaned = match owner {
                    Some(owner) => labels::owner_is_gone(owner),
                    None => ours,
                };
                orphaned || labels::expired(container_labels, now)
            })
            .await?;
        self.remove_orphaned_networks(false).await;
        Ok(removed)
    }

    /// Removes every container this process created (the last step of a bounded shutdown).
    pub async fn remove_own(&self) -> Result<usize> {
        let me = labels::owner();
        let removed = self
            .remove_managed(|container_labels| container_labels.get(labels::OWNER) == Some(&me))
            .await?;
        self.shutdown_egress().await;
        self.remove_orphaned_networks(true).await;
        Ok(removed)
    }

    /// Force-removes the managed containers `doomed` picks, several at once, each within its
    /// deadline.
    async fn remove_managed(
        &self,
        doomed: impl Fn(&HashMap<String, String>) -> bool,
    ) -> Result<usize> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}=true", labels::MANAGED)],
        )]);
        let containers = bounded(
            Call::ListContainers,
            "the managed containers",
            self.client().list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            })),
        )
        .await
        .context("could not list containers to reap orphans")?;
        let doomed: Vec<_> = containers
            .into_iter()
            .filter_map(|container| {
                let (Some(id), Some(container_labels)) = (container.id, container.labels) else {
                    return None;
                };
                doomed(&container_labels).then_some((id, container.state))
            })
            .collect();
        let removed = futures::stream::iter(doomed)
            .map(|(id, state)| async move {
                let options = RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                let target = format!("container {id}");
                match bounded(
                    Call::RemoveContainer,
                    &target,
                    self.client().remove_container(&id, Some(options)),
                )
                .await
                {
                    Ok(()) => {
                        info!(container = %id, state = ?state, "removed orphaned sandbox");
                        true
                    }
                    Err(err) => {
                        warn!(container = %id, error = %err, "could not remove orphaned sandbox");
                        false
                    }
                }
            })
            .buffer_unordered(PARALLEL_REMOVALS)
            .filter(|removed| std::future::ready(*removed))
            .count()
            .await;
        Ok(removed)
    }

    /// Per-run networks whose containers are all gone (a network whose creator is still alive is
    /// kept: it may be about to get its container), then the firewall rules of egress networks
    /// that no longer exist.
    /// `mine`: this process's own networks go too (a shutdown).
    async fn remove_orphaned_networks(&self, mine: bool) {
        let me = labels::owner();
        let networks = self
            .managed_networks(Some(|owner: &str| {
                labels::owner_is_gone(owner) || (mine && owner == me)
            }))
            .await;
        for name in networks.unwrap_or_default() {
            // Removal fails while a container still uses the network, which is what we want.
            let _ = bounded(
                Call::RemoveNetwork,
                &format!("network {name}"),
                self.client().remove_network(&name),
            )
            .await;
        }
        firewall::reap(async || self.managed_networks(None::<fn(&str) -> bool>).await).await;
    }

    /// The names of the managed networks (with `removable`, only those without an owner label or
    /// whose owner it accepts); `None` when the engine does not answer.
    async fn managed_networks(
        &self,
        removable: Option<impl Fn(&str) -> bool>,
    ) -> Option<Vec<String>> {
        use bollard::query_parameters::ListNetworksOptions;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}=true", labels::MANAGED)],
        )]);
        let networks = bounded(
            Call::ListNetworks,
            "the managed networks",
            self.client().list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            })),
        )
        .await
        .ok()?;
        Some(
            networks
                .into_iter()
                .filter(|network| {
                    let owner = network.labels.as_ref().and_then(|l| l.get(labels::OWNER));
                    match (&removable, owner) {
                        (None, _) | (Some(_), None) => true,
                        (Some(removable), Some(owner)) => removable(owner),
                    }
                })
                .filter_map(|network| network.name)
                .collect(),
        )
    }
}
