//! Shipping a run's events to the manager: buffered in order, sent in batches (up to
//! [`BatchPolicy::max_events`] events and [`BatchPolicy::max_batch_bytes`] of JSON, or
//! [`BatchPolicy::max_delay`] after the first one waiting), retried by the client's backoff, and
//! flushed on demand before any terminal status. When the buffer is full (events or bytes), new
//! output events are dropped and the count goes with the next batch, as do the counts of the
//! host's [`DROPPED_KIND`] markers; the turn's other events (and the markers) have a reserve of
//! their own past that, so a flood of output never costs the events that say what the turn did.
//! A batch the manager finds too large (413) is split, never a lease loss. A batch the manager
//! did not take stays buffered and goes again; events still undelivered when the shipper stops
//! are counted as dropped, and if even that count cannot reach the manager the shipper says how
//! many it lost ([`ShipStats::undelivered`]) so the run fails naming them: never silently short.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, warn};

use crate::manager::protocol::MAX_BATCH_BYTES;
use crate::manager::{ClientError, ManagerClient};
use crate::outcome::TurnEvent;
use crate::plugin::capability::events::DROPPED_KIND;

/// How events are grouped into requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most events in one request.
    pub max_events: usize,
    /// Longest an event waits for companions before it is sent.
    pub max_delay: Duration,
    /// Most events held while the manager is slow or away; later ones are dropped and counted.
    pub max_buffered: usize,
    /// Most JSON bytes in one request (at least one event goes in each).
    pub max_batch_bytes: usize,
    /// Most JSON bytes held; later events are dropped and counted.
    pub max_buffered_bytes: usize,
}

/// The share of [`BatchPolicy::max_buffered`] (and of its bytes) that events other than output
/// may use past the limit: one in `RESERVE_DIVISOR` more.
const RESERVE_DIVISOR: usize = 16;

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            // A request costs the manager a durable transaction (an fsync): a turn's burst of
            // output goes in few of them (3 000 lines: 3 requests, not 30).
            max_events: 1000,
            max_delay: Duration::from_millis(200),
            max_buffered: 100_000,
            max_batch_bytes: MAX_BATCH_BYTES,
            // Held as the JSON that will be sent, so this is the buffer's memory too: a flood
            // faster than the manager takes it costs the host at most this much.
            max_buffered_bytes: 8 << 20,
        }
    }
}

impl BatchPolicy {
    /// One request per event: the baseline the benchmarks compare batching with.
    pub fn per_event() -> Self {
        Self {
            max_events: 1,
            max_delay: Duration::ZERO,
            ..Self::default()
        }
    }
}

/// What the shipper did over its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShipStats {
    pub sent: u64,
    pub requests: u64,
    /// Events dropped (output past the buffer, and the output the session's markers count).
    pub dropped: u64,
    /// Events neither stored by the manager nor counted in its `dropped_events`: the shipper
    /// stopped while the manager was not taking its batches.
    pub undelivered: u64,
}

/// Why events could not be delivered.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ShipError {
    pub message: String,
    /// The manager fenced the runner or the run ended: retrying is pointless.
    pub fatal: bool,
}

/// The sending end a session writes its events into, and the handle to flush them.
pub struct EventShipper {
    flush: mpsc::UnboundedSender<oneshot::Sender<Result<ShipStats, ShipError>>>,
    task: JoinHandle<ShipStats>,
}

impl EventShipper {
    /// Starts shipping to `run`; returns the sink for the session's events.
    pub fn start(
        client: &ManagerClient,
        run: String,
        token: String,
        policy: BatchPolicy,
    ) -> (mpsc::UnboundedSender<TurnEvent>, Self) {
        Self::start_tapped(client, run, token, policy, None)
    }

    /// [`EventShipper::start`], showing each event to `tap` (the runner's metrics) first.
    pub fn start_tapped(
        client: &ManagerClient,
        run: String,
        token: String,
        policy: BatchPolicy,
        tap: Option<std::sync::Arc<super::metrics::EventTap>>,
    ) -> (mpsc::UnboundedSender<TurnEvent>, Self) {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        let shipper = Shipper {
            client: client.clone(),
            run,
            token,
            policy,
            buffer: VecDeque::new(),
            buffered_bytes: 0,
            oldest: None,
            unreported_drops: 0,
            stats: ShipStats::default(),
            failed: None,
            tap,
        };
        let task = tokio::spawn(
            shipper
                .run(events_rx, flush_rx)
                .instrument(tracing::Span::current()),
        );
        (
            events_tx,
            Self {
                flush: flush_tx,
                task,
            },
        )
    }

    /// Sends everything emitted so far; resolves once the manager stored it (or it cannot).
    pub async fn flush(&self) -> Result<ShipStats, ShipError> {
        let (tx, rx) = oneshot::channel();
        let gone = || ShipError {
            message: "the event shipper stopped".into(),
            fatal: true,
        };
        self.flush.send(tx).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Stops after shipping what it can; all senders must be dropped first.
    pub async fn finish(self) -> ShipStats {
        drop(self.flush);
        self.task.await.unwrap_or_default()
    }
}

/// A buffered event: its sequence number and the JSON that goes in the batch.
struct Encoded {
    seq: u64,
    json: Box<RawValue>,
}

/// [`AppendEvents`](crate::manager::protocol::AppendEvents) with its events already encoded: the
/// same JSON on the wire.
#[derive(Serialize)]
struct EncodedBatch<'a> {
    events: Vec<&'a RawValue>,
    dropped: u64,
}

struct Shipper {
    client: ManagerClient,
    run: String,
    token: String,
    policy: BatchPolicy,
    /// Events waiting, encoded once as the JSON the batch carries.
    buffer: VecDeque<Encoded>,
    buffered_bytes: usize,
    /// When the oldest buffered event arrived.
    oldest: Option<Instant>,
    unreported_drops: u64,
    stats: ShipStats,
    /// Set once delivery failed for good; later events are counted as dropped.
    failed: Option<ShipError>,
    tap: Option<std::sync::Arc<super::metrics::EventTap>>,
}

impl Shipper {
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<TurnEvent>,
        mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<Result<ShipStats, ShipError>>>,
    ) -> ShipStats {
        let mut events_open = true;
        let mut flushes_open = true;
        while events_open || flushes_open {
            let due = self.oldest.map(|t| t + self.policy.max_delay);
            tokio::select! {
                event = events.recv(), if events_open => match event {
                    Some(event) => {
                        self.push(event);
                        while let Ok(event) = events.try_recv() {
                            self.push(event);
                        }
                        if self.buffer.len() >= self.policy.max_events {
                            self.ship_full_batches().await;
                        }
                    }
                    None => events_open = false,
                },
                request = flushes.recv(), if flushes_open => match request {
                    Some(reply) => {
                        while let Ok(event) = events.try_recv() {
                            self.push(event);
                        }
                        let result = self.ship_all().await.map(|()| self.stats);
                        let _ = reply.send(result);
                    }
                    None => flushes_open = false,
                },
                () = sleep_until_opt(due), if due.is_some() => {
                    let _ = self.ship_batch().await;
                }
            }
        }
        if let Err(err) = self.ship_all().await {
            self.give_up(err).await;
        }
        self.stats
    }

    /// The shipper stops with events the manager did not take: they are counted as dropped, and
    /// the count goes in one last request; what even that could not report is `undelivered`.
    async fn give_up(&mut self, err: ShipError) {
        let left = self.buffer.len() as u64;
        self.remove_oldest(self.buffer.len());
        self.count_drops(left);
        if self.failed.is_none() && self.ship_batch().await.is_ok() {
            warn!(events = left, error = %err, "events the manager did not take are counted as dropped");
            return;
        }
        self.stats.undelivered = self.unreported_drops;
        warn!(
            events = self.unreported_drops,
            error = %err,
            "events neither reached the manager nor were counted there"
        );
    }

    fn push(&mut self, event: TurnEvent) {
        if let Some(tap) = &self.tap {
            tap.on_event(&event);
        }
        let marker = event.kind == DROPPED_KIND;
        if marker {
            // Output the session dropped: counted on the run like our own drops.
            let dropped = event.payload["dropped"].as_u64().unwrap_or(0);
            self.count_drops(dropped);
        }
        let json = match serde_json::value::to_raw_value(&event) {
            Ok(json) => json,
            Err(err) => {
                warn!(kind = %event.kind, error = %err, "an event could not be encoded; dropped");
                self.count_drops(1);
                return;
            }
        };
        let size = json.get().len();
        // Output may fill the buffer; the other events have a reserve past it.
        let (max_events, max_bytes) = if event.kind.starts_with("output.") {
            (self.policy.max_buffered, self.policy.max_buffered_bytes)
        } else {
            let BatchPolicy {
                max_buffered,
                max_buffered_bytes,
                ..
            } = self.policy;
            (
                max_buffered + max_buffered / RESERVE_DIVISOR,
                max_buffered_bytes + max_buffered_bytes / RESERVE_DIVISOR,
            )
        };
        if self.failed.is_some()
            || self.buffer.len() >= max_events
            || self.buffered_bytes + size > max_bytes
        {
            // A marker lost here is no lost output: its count already went to the run.
            if !marker {
                self.count_drops(1);
            }
            return;
        }
        if self.buffer.is_empty() {
            self.oldest = Some(Instant::now());
        }
        self.buffered_bytes += size;
        self.buffer.push_back(Encoded {
            seq: event.seq,
            json,
        });
    }

    fn count_drops(&mut self, n: u64) {
        self.unreported_drops = self.unreported_drops.saturating_add(n);
        self.stats.dropped = self.stats.dropped.saturating_add(n);
    }

    /// How many of the oldest events go in the next request: by count and by bytes, at least one.
    fn batch_len(&self) -> usize {
        let mut bytes = 0;
        let n = self
            .buffer
            .iter()
            .take(self.policy.max_events.max(1))
            .take_while(|event| {
                bytes += event.json.get().len() + 1;
                bytes <= self.policy.max_batch_bytes
            })
            .count();
        n.max(1).min(self.buffer.len())
    }

    async fn ship_full_batches(&mut self) {
        while self.buffer.len() >= self.policy.max_events
            || self.buffered_bytes >= self.policy.max_batch_bytes
        {
            if self.ship_batch().await.is_err() {
                return;
            }
        }
    }

    async fn ship_all(&mut self) -> Result<(), ShipError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        while !self.buffer.is_empty() || self.unreported_drops > 0 {
            self.ship_batch().await?;
        }
        Ok(())
    }

    /// Sends the oldest batch; on success it leaves the buffer.
    async fn ship_batch(&mut self) -> Result<(), ShipError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut n = self.batch_len();
        loop {
            let batch = EncodedBatch {
                events: self.buffer.iter().take(n).map(|e| &*e.json).collect(),
                dropped: self.unreported_drops,
            };
            let sent = self
                .client
                .append_events(&self.run, &self.token, &batch)
                .await;
            match sent {
                Ok(_) => {
                    self.remove_oldest(n);
                    self.stats.sent += n as u64;
                    self.stats.requests += 1;
                    self.unreported_drops = 0;
                    return Ok(());
                }
                // Too large for this manager: smaller batches; a single event it can never take
                // is dropped and counted. The lease is fine.
                Err(ClientError::Status { status: 413, .. }) if n > 1 => {
                    n /= 2;
                    self.policy.max_batch_bytes = (self.policy.max_batch_bytes / 2).max(1);
                    warn!(
                        events = n,
                        "the manager refused a batch as too large; splitting it"
                    );
                }
                Err(ClientError::Status { status: 413, .. }) => {
                    warn!(
                        seq = self.buffer[0].seq,
                        "the manager refused an event as too large; dropped"
                    );
                    self.remove_oldest(1);
                    self.count_drops(1);
                    return Ok(());
                }
                Err(err) => return Err(self.failed_delivery(n, err)),
            }
        }
    }

    fn remove_oldest(&mut self, n: usize) {
        for event in self.buffer.drain(..n) {
            self.buffered_bytes -= event.json.get().len();
        }
        self.oldest = (!self.buffer.is_empty()).then(Instant::now);
    }

    fn failed_delivery(&mut self, n: usize, err: ClientError) -> ShipError {
        let fatal = is_fatal(&err);
        let error = ShipError {
            message: format!("could not deliver {n} event(s): {err}"),
            fatal,
        };
        warn!(error = %error, fatal, "event delivery failed");
        if fatal {
            self.count_drops(self.buffer.len() as u64);
            self.buffer.clear();
            self.buffered_bytes = 0;
            self.oldest = None;
            self.failed = Some(error.clone());
        } else {
            // Try again after the next event or flush, or a batch delay from now.
            self.oldest = Some(Instant::now());
        }
        error
    }
}

fn is_fatal(err: &ClientError) -> bool {
    matches!(
        err,
        ClientError::Lease { .. }
            | ClientError::Unauthorized { .. }
            | ClientError::Status { .. }
            | ClientError::Request { .. }
    )
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
