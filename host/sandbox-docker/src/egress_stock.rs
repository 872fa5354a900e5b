//! Egress networks kept ready, the way the warm pool keeps containers: an `egress` sandbox takes a
//! network whose creation, listener and firewall rules are already done, and a background task
//! makes the next one. A used network (its rules, its proxy) is torn down in the background too,
//! after its container is gone, so neither end of a run waits for it.
//!
//! Bounded: at most `target` networks wait, made one at a time, with a growing pause after a
//! failure. A ready network holds no policy and no credentials (the proxy's policy is given when
//! a sandbox takes it, see `egress`), and it is never reused: one network, one sandbox. Ready
//! networks carry the usual labels (owner, runner), so a reaper removes those of a dead host and
//! then their rules. [`EgressStock::shutdown`] removes the ready ones and waits for teardowns.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bollard::Docker;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::egress::{self, EgressNetwork, ReadyNetwork};

/// The most ready networks a host may ask for (each is a bridge, a subnet and firewall rules).
pub const MAX_READY_NETWORKS: usize = 16;

/// Wakes the stock's refill when dropped (see [`EgressStock::take`]).
pub(super) struct RefillAfter(Arc<Notify>);

impl Drop for RefillAfter {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

pub(super) struct EgressStock {
    docker: Docker,
    runner_id: String,
    target: usize,
    ready: Mutex<VecDeque<ReadyNetwork>>,
    /// Wakes the refill task (a network was taken).
    taken: Arc<Notify>,
    /// Wakes waiters of [`settled`](Self::settled) (a network was added).
    added: Notify,
    stop: CancellationToken,
    refill_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Teardowns running in the background.
    teardowns: watch::Sender<usize>,
}

impl EgressStock {
    /// A stock of `target` networks (at most [`MAX_READY_NETWORKS`]); with a target above 0 its
    /// refill starts now, on the current Tokio runtime.
    pub(super) fn start(docker: Docker, runner_id: String, target: usize) -> Arc<Self> {
        let stock = Arc::new(Self {
            docker,
            runner_id,
            target: target.min(MAX_READY_NETWORKS),
            ready: Mutex::default(),
            taken: Arc::default(),
            added: Notify::new(),
            stop: CancellationToken::new(),
            refill_task: Mutex::default(),
            teardowns: watch::Sender::new(0),
        });
        if stock.target > 0 {
            let task = tokio::spawn(refill(Arc::downgrade(&stock), stock.stop.clone()));
            *stock.refill_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        }
        stock
    }

    pub(super) fn target(&self) -> usize {
        self.target
    }

    pub(super) fn ready_count(&self) -> usize {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A ready network, or one made now when none is (or the host keeps none); and the guard
    /// that starts making its replacement when dropped, which the caller holds until its sandbox
    /// has started: the engine makes networks and starts containers one at a time, so a refill
    /// during the start would slow the very start it is for.
    pub(super) async fn take(&self) -> (anyhow::Result<ReadyNetwork>, RefillAfter) {
        let ready = self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        let refill = RefillAfter(self.taken.clone());
        match ready {
            Some(ready) => (Ok(ready), refill),
            None => {
                tracing::debug!("no egress network ready; making one");
                (egress::prepare(&self.docker, &self.runner_id).await, refill)
            }
        }
    }

    /// Tears `network` down in the background (its container must be gone already).
    pub(super) fn retire(&self, network: EgressNetwork) {
        network.proxy.stop();
        let docker = self.docker.clone();
        self.background(async move { network.teardown(&docker).await });
    }

    /// Tears an unused ready network down in the background.
    fn discard(&self, network: ReadyNetwork) {
        let docker = self.docker.clone();
        self.background(async move { network.teardown(&docker).await });
    }

    fn background(&self, teardown: impl Future<Output = ()> + Send + 'static) {
        self.teardowns.send_modify(|n| *n += 1);
        let teardowns = self.teardowns.clone();
        tokio::spawn(async move {
            teardown.await;
            teardowns.send_modify(|n| *n -= 1);
        });
    }

    /// Waits until the stock holds its target and no teardown runs (benchmarks and tests: a
    /// start measured or checked on a settled host).
    pub(super) async fn settled(&self) {
        loop {
            let added = self.added.notified();
            if self.ready_count() >= self.target || self.stop.is_cancelled() {
                break;
            }
            added.await;
        }
        let _ = self.teardowns.subscribe().wait_for(|n| *n == 0).await;
    }

    /// Stops the refill, removes the ready networks and waits for every teardown.
    pub(super) async fn shutdown(&self) {
        self.stop.cancel();
        let task = self
            .refill_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let ready: Vec<_> = self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for network in ready {
            self.discard(network);
        }
        let _ = self.teardowns.subscribe().wait_for(|n| *n == 0).await;
    }
}

/// Keeps the stock at its target, one network at a time; a failure (no iptables, an engine that
/// refuses) pauses it, longer each time, so a broken host is not hammered.
async fn refill(stock: Weak<EgressStock>, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let Some(this) = stock.upgrade() else { return };
        if this.ready_count() >= this.target {
            this.added.notify_waiters();
            let taken = this.taken.clone();
            drop(this);
            tokio::select! {
                () = taken.notified() => continue,
                () = stop.cancelled() => return,
            }
        }
        let (docker, runner_id) = (this.docker.clone(), this.runner_id.clone());
        drop(this);
        // Not cut short by a shutdown (a network half made would be left behind): each of its
        // steps is bounded, and a shutdown waits for it, then removes what it made.
        let made = egress::prepare(&docker, &runner_id).await;
        let Some(this) = stock.upgrade() else {
            if let Ok(network) = made {
                network.teardown(&docker).await;
            }
            return;
        };
        match made {
            Ok(network) if stop.is_cancelled() => {
                drop(this);
                network.teardown(&docker).await;
                return;
            }
            Ok(network) => {
                failures = 0;
                this.ready
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_back(network);
                this.added.notify_waiters();
            }
            Err(err) => {
                failures += 1;
                tracing::warn!(error = %format!("{err:#}"), failures, "could not make an egress network ready");
                drop(this);
                let pause = Duration::from_millis(200 * 2u64.pow(failures.min(6)));
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}
