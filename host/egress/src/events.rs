//! What the proxy tells its owner: one [`NetworkEvent`] per connection it allowed (when it ends,
//! with the bytes each way) or denied (at once, with the reason).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// Events waiting for their consumer; past this they are dropped and counted, so a sandbox opening
/// connections in a loop cannot grow the host's memory.
pub const EVENT_QUEUE: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkEvent {
    pub allowed: bool,
    /// The host name (or IP literal) the client asked for, as it asked.
    pub host: String,
    pub port: u16,
    /// `CONNECT` or the HTTP method of an absolute-URI request.
    pub method: String,
    /// The address connected to (allowed) or refused (denied after resolving), if any.
    pub address: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Why it was denied (or how an allowed connection ended badly).
    pub reason: Option<String>,
    /// The credential the gateway added, for a request through `/cred/<NAME>/…`.
    pub credential: Option<String>,
}

impl NetworkEvent {
    /// The run event's kind.
    pub fn kind(&self) -> &'static str {
        if self.allowed {
            "network.allowed"
        } else {
            "network.denied"
        }
    }

    /// The run event's payload (see docs/events.md).
    pub fn payload(&self) -> serde_json::Value {
        let mut payload = serde_json::json!({
            "host": self.host,
            "port": self.port,
            "method": self.method,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
        });
        if let Some(address) = &self.address {
            payload["address"] = address.clone().into();
        }
        if let Some(reason) = &self.reason {
            payload["reason"] = reason.clone().into();
        }
        if let Some(credential) = &self.credential {
            payload["credential"] = credential.clone().into();
        }
        payload
    }
}

/// Where a proxy's events go: a bounded queue, and a count of what did not fit.
#[derive(Clone)]
pub struct EventSink {
    queue: mpsc::Sender<NetworkEvent>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl EventSink {
    /// A sink and the receiving end of its queue.
    pub fn channel() -> (Self, mpsc::Receiver<NetworkEvent>) {
        let (queue, receiver) = mpsc::channel(EVENT_QUEUE);
        (
            Self {
                queue,
                dropped: Arc::default(),
            },
            receiver,
        )
    }

    /// Queues `event`, or counts it as dropped when the queue is full or closed.
    pub fn send(&self, event: NetworkEvent) {
        if event.allowed {
            tracing::debug!(host = %event.host, port = event.port, up = event.bytes_up, down = event.bytes_down, "egress allowed");
        } else {
            tracing::info!(host = %event.host, port = event.port, reason = event.reason.as_deref().unwrap_or(""), "egress denied");
        }
        if self.queue.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The count of events dropped, shared (holding it does not keep the queue open).
    pub fn dropped(&self) -> DroppedEvents {
        DroppedEvents(self.dropped.clone())
    }
}

/// How many of a sink's events were dropped since last asked.
#[derive(Clone, Debug)]
pub struct DroppedEvents(Arc<AtomicU64>);

impl DroppedEvents {
    /// Events dropped so far, reset to zero.
    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}
