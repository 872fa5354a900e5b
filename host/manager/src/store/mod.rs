//! The durable store of the embedded manager: one redb file holding runners, runs (with their
//! lease), commands and events. Every mutation is one write transaction committed with redb's
//! default durability (fsync), so an accepted request survives a crash or restart.
//!
//! Methods are synchronous; the server calls them from `spawn_blocking`.

use std::path::Path;
use std::sync::Arc;

mod attempts;
pub mod blobs;
mod bulk;
mod commands;
mod events;
mod open;
mod probe;
mod queue;
mod results;
mod retention;
mod runners;

pub use queue::MAX_CLAIM_BACKENDS;
pub use retention::{SWEEP_ROWS, SweepReport};
pub use runners::{MAX_LABEL_CHARS, MAX_REQUIRED_LABELS};

pub use open::RepairReport;
pub use probe::RunStats;

pub use attempts::LeasePolicy;
pub use blobs::{BlobDir, DEFAULT_BLOB_GRACE, DEFAULT_MAX_BLOB_BYTES};
pub use results::MAX_RESULT_FILES;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::clock::Clock;
use super::error::ManagerError;
use super::protocol::{
    Cancellation, ClaimNextRequest, ClaimRequest, Command, CreateRun, DEFAULT_LEASE_SECONDS,
    HeartbeatReply, HeartbeatRequest, Lease, MAX_LEASE_SECONDS, RegisterRunner, Run, RunStatus,
    RunStatusUpdate, Runner, labels_satisfy, valid_id,
};

type Result<T> = std::result::Result<T, ManagerError>;

const RUNNERS: TableDefinition<&str, &[u8]> = TableDefinition::new("runners");
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
/// (run id, command seq) → command.
const COMMANDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("commands");
/// "run id \0 command id" → command seq.
const COMMAND_IDS: TableDefinition<&str, u64> = TableDefinition::new("command_ids");
/// (run id, event seq) → event.
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");

/// A run as stored: the public view plus its lease (the token is never shown to clients).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunRecord {
    run: Run,
    lease: Option<LeaseRecord>,
    /// Sequence numbers of the commands whose result is stored whole (nothing left out): a new
    /// attempt can restore what they changed (see `attempts::settle_lost_attempt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    restorable: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct LeaseRecord {
    token: String,
    runner_id: String,
    expires_at_ms: u64,
    lease_ms: u64,
    /// How long after `expires_at_ms` the run stays unclaimable ([`LeasePolicy::regrant_gap`]).
    #[serde(default)]
    gap_ms: u64,
    #[serde(default)]
    attempt_id: String,
    /// The runner gave the run back; the token is kept so a retried release is recognised.
    #[serde(default)]
    released: bool,
}

impl RunRecord {
    /// The run as clients see it at `now`: a running run whose lease lapsed (expired and its
    /// safety gap passed) is `queued` again, or `failed` when that was its last attempt.
    fn view(&self, now: u64) -> Run {
        if self.run.status.is_terminal() || !self.lease_lapsed(now) {
            return self.run.clone();
        }
        let mut lapsed = self.clone();
        lapsed.run.status = RunStatus::Queued;
        if let Some(open) = lapsed.run.attempts.last_mut().filter(|a| a.end.is_none()) {
            open.end = Some(crate::protocol::AttemptEnd::LeaseExpired);
            open.ended_at_ms = Some(self.lease.as_ref().map_or(now, |l| l.expires_at_ms));
        }
        if let Some(message) = lapsed.exhausted() {
            lapsed.run.status = RunStatus::Failed;
            lapsed.run.failure_kind = Some(crate::outcome::FailureKind::LeaseLost);
            lapsed.run.message = Some(message);
        }
        lapsed.run
    }
}

/// The manager's durable state.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    blobs: blobs::BlobDir,
    clock: Arc<dyn Clock>,
    policy: LeasePolicy,
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(v)?)
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(b)?)
}

fn lease_ms(seconds: Option<u64>) -> Result<u64> {
    let s = seconds.unwrap_or(DEFAULT_LEASE_SECONDS);
    if s == 0 || s > MAX_LEASE_SECONDS {
        return Err(ManagerError::BadRequest(format!(
            "lease_seconds must be between 1 and {MAX_LEASE_SECONDS}, got {s}"
        )));
    }
    Ok(s * 1000)
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn check_id(id: &Option<String>, what: &str) -> Result<()> {
    match id {
        Some(id) if !valid_id(id) => Err(ManagerError::BadRequest(format!(
            "{what} id {id:?} is not 1-128 characters of [A-Za-z0-9_.-]"
        ))),
        _ => Ok(()),
    }
}

fn command_key(run: &str, cmd: &str) -> String {
    format!("{run}\0{cmd}")
}

fn run_not_found(run: &str) -> ManagerError {
    ManagerError::NotFound(format!("run {run} does not exist"))
}

/// The lease token must be the run's current one, and the run must not have ended.
fn check_lease(rec: &RunRecord, token: &str) -> Result<()> {
    match &rec.lease {
        Some(l) if l.token == token && l.released => {
            return Err(ManagerError::LeaseLost(format!(
                "this runner released run {} (attempt {}); claim it again to work on it",
                rec.run.id, l.attempt_id
            )));
        }
        Some(l) if l.token == token => {}
        Some(l) => {
            return Err(ManagerError::LeaseLost(format!(
                "lease token is not the current lease of run {} (held by runner {})",
                rec.run.id, l.runner_id
            )));
        }
        None => {
            return Err(ManagerError::LeaseLost(format!(
                "run {} has no lease; claim it first",
                rec.run.id
            )));
        }
    }
    if rec.run.status.is_terminal() {
        return Err(ManagerError::RunTerminal(format!(
            "run {} already ended: {}",
            rec.run.id, rec.run.status
        )));
    }
    Ok(())
}

/// Acked, unfinished commands of `run` whose cancellation was asked for.
fn commands_to_cancel(
    commands: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    run: &str,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for entry in commands.range((run, 0)..=(run, u64::MAX))? {
        let (_, v) = entry?;
        let cmd: Command = decode(v.value())?;
        if cmd.cancel_requested && !cmd.status.is_terminal() {
            ids.push(cmd.id);
        }
    }
    Ok(ids)
}

impl Store {
    /// Opens the store file, or creates it when no file is there; a damaged or empty file is an
    /// error (see [`open`]).
    pub fn open(path: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Self> {
        let db = open::open_database(path.as_ref())?;
        let blobs = blobs::BlobDir::beside(path.as_ref())?;
        let tx = db.begin_write()?;
        tx.open_table(RUNNERS)?;
        tx.open_table(RUNS)?;
        tx.open_table(COMMANDS)?;
        tx.open_table(COMMAND_IDS)?;
        tx.open_table(EVENTS)?;
        tx.open_table(retention::DELETING)?;
        tx.open_table(results::RESULTS)?;
        tx.open_table(blobs::BLOB_REFS)?;
        tx.open_table(blobs::RUN_BLOBS)?;
        tx.commit()?;
        queue::ensure_index(&db)?;
        Ok(Self {
            db: Arc::new(db),
            blobs,
            clock,
            policy: LeasePolicy::default(),
        })
    }

    /// Hands runs out under `policy` instead of the default one.
    pub fn with_policy(mut self, policy: LeasePolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Reads a run record inside a write transaction.
    fn load_run(table: &redb::Table<&str, &[u8]>, run: &str) -> Result<RunRecord> {
        match table.get(run)? {
            Some(v) => decode(v.value()),
            None => Err(run_not_found(run)),
        }
    }

    /// Stores `rec` and moves the run to its place in the queue index (see [`queue`]).
    fn save_run(
        tx: &redb::WriteTransaction,
        table: &mut redb::Table<&str, &[u8]>,
        rec: &RunRecord,
    ) -> Result<()> {
        let old: Option<RunRecord> =
            match table.insert(rec.run.id.as_str(), encode(rec)?.as_slice())? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
        queue::reindex(tx, old.as_ref(), Some(rec))
    }

    fn read_run(&self, run: &str) -> Result<RunRecord> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RUNS)?;
        match table.get(run)? {
            Some(v) => decode(v.value()),
            None => Err(run_not_found(run)),
        }
    }

    // ---- runners ----

    pub fn register_runner(&self, req: RegisterRunner) -> Result<Runner> {
        check_id(&req.id, "runner")?;
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        let runner = {
            let mut table = tx.open_table(RUNNERS)?;
            let id = req.id.clone().unwrap_or_else(|| new_id("rnr"));
            let existing: Option<Runner> = match table.get(id.as_str())? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            let runner = Runner {
                id: id.clone(),
                name: req.name,
                labels: req.labels,
                registered_at_ms: existing.as_ref().map_or(now, |r| r.registered_at_ms),
                last_seen_ms: Some(now),
                last_heartbeat_ms: existing.and_then(|r| r.last_heartbeat_ms),
            };
            table.insert(id.as_str(), encode(&runner)?.as_slice())?;
            runner
        };
        tx.commit()?;
        Ok(runner)
    }

    fn runner_exists(tx: &redb::WriteTransaction, id: &str) -> Result<()> {
        let table = tx.open_table(RUNNERS)?;
        if table.get(id)?.is_none() {
            return Err(ManagerError::NotFound(format!(
                "runner {id} is not registered"
            )));
        }
        Ok(())
    }

    // ---- runs ----

    pub fn create_run(&self, req: CreateRun) -> Result<Run> {
        self.create_run_traced(req, None)
    }

    /// Creates a run under the W3C trace context of the request that created it.
    pub fn create_run_traced(
        &self,
        req: CreateRun,
        trace_context: Option<crate::trace_context::TraceContext>,
    ) -> Result<Run> {
        check_id(&req.id, "run")?;
        attempts::check_max_attempts(req.max_attempts)?;
        runners::check_required_labels(&req.require_labels)?;
        if req.backend.trim().is_empty() {
            return Err(ManagerError::BadRequest("backend must not be empty".into()));
        }
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        let run = {
            let mut table = tx.open_table(RUNS)?;
            let id = req.id.clone().unwrap_or_else(|| new_id("run"));
            if Self::being_deleted(&tx, &id)? {
                return Err(ManagerError::IdConflict(format!(
                    "run {id} was deleted and its commands and events are still being removed; \
                     use another id, or retry after the manager's next sweep"
                )));
            }
            if let Some(existing) = table.get(id.as_str())? {
                let rec: RunRecord = decode(existing.value())?;
                if rec.run.backend == req.backend
                    && rec.run.bundle == req.bundle
                    && rec.run.config == req.config
                    && rec.run.require_labels == req.require_labels
                {
                    return Ok(rec.view(now));
                }
                return Err(ManagerError::IdConflict(format!(
                    "run {id} already exists with a different body"
                )));
            }
            let rec = RunRecord {
                run: Run {
                    id,
                    status: RunStatus::Queued,
                    backend: req.backend,
                    bundle: req.bundle,
                    config: req.config,
                    created_at_ms: now,
                    updated_at_ms: now,
                    runner_id: None,
                    lease_expires_at_ms: None,
                    cancel_requested: false,
                    failure_kind: None,
                    message: None,
                    last_event_seq: 0,
                    dropped_events: 0,
                    last_command_seq: 0,
                    max_attempts: Some(req.max_attempts.unwrap_or(self.policy.max_attempts)),
                    attempts: Vec::new(),
                    require_labels: req.require_labels,
                    trace_context,
                },
                lease: None,
                restorable: Vec::new(),
            };
            if let Some(sha) = self.bundle_blob(rec.run.bundle.as_ref())? {
                Self::add_blob_ref(&tx, &rec.run.id, &sha)?;
            }
            Self::save_run(&tx, &mut table, &rec)?;
            rec.run
        };
        tx.commit()?;
        Ok(run)
    }

    /// `Ok` when `lease_token` is the current lease of `run` (a runner reading what it holds).
    pub fn check_holds_lease(&self, run: &str, lease_token: &str) -> Result<()> {
        check_lease(&self.read_run(run)?, lease_token)
    }

    pub fn get_run(&self, run: &str) -> Result<Run> {
        Ok(self.read_run(run)?.view(self.now_ms()))
    }

    /// Runs oldest first, optionally only those with `status`, at most `limit`.
    pub fn list_runs(&self, status: Option<RunStatus>, limit: usize) -> Result<Vec<Run>> {
        let now = self.now_ms();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RUNS)?;
        let mut runs = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            let run = decode::<RunRecord>(v.value())?.view(now);
            if status.is_none_or(|s| s == run.status) {
                runs.push(run);
                // Memory stays bounded by the limit, not by the runs stored.
                if runs.len() >= limit.saturating_mul(2).max(1024) {
                    runs.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
                    runs.truncate(limit);
                }
            }
        }
        runs.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        runs.truncate(limit);
        Ok(runs)
    }

    pub fn claim(&self, run: &str, req: ClaimRequest) -> Result<Lease> {
        let lease_ms = lease_ms(req.lease_seconds)?;
        let tx = self.db.begin_write()?;
        Self::runner_exists(&tx, &req.runner_id)?;
        Self::touch_runner(&tx, &req.runner_id, self.now_ms(), false)?;
        let lease = {
            let mut table = tx.open_table(RUNS)?;
            let mut commands = tx.open_table(COMMANDS)?;
            let mut rec = Self::load_run(&table, run)?;
            let lease = self.grant(
                &mut rec,
                &mut commands,
                &req.runner_id,
                lease_ms,
                req.placement,
            )?;
            Self::save_run(&tx, &mut table, &rec)?;
            lease
        };
        // A claim refused because the run just ended still records that end.
        tx.commit()?;
        lease
    }

    /// Claims the oldest claimable run (queued, or whose lease lapsed: expired and past its safety
    /// gap); `None` when there is none. Among lapsed runs, per backend, the one that lapsed first is
    /// considered. A run that must end instead (cancel asked, out of attempts, a lost attempt that
    /// cannot be re-run) is ended on the way, and the next one considered.
    pub fn claim_next(&self, req: ClaimNextRequest) -> Result<Option<Lease>> {
        let lease_ms = lease_ms(req.lease_seconds)?;
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        let runner = Self::load_runner(&tx, &req.runner_id)?;
        Self::touch_runner(&tx, &req.runner_id, now, false)?;
        let lease = {
            let mut table = tx.open_table(RUNS)?;
            let mut commands = tx.open_table(COMMANDS)?;
            // The queue index names each candidate; no scan of the stored runs. A candidate
            // settled on the way leaves the claimable slots; one whose labels this runner lacks
            // is passed over (at most MAX_PASSED_OVER of them), so each is looked at once.
            let mut seen = std::collections::HashSet::new();
            let mut lease = None;
            while seen.len() <= queue::MAX_PASSED_OVER
                && let Some(id) = queue::next_claimable(&tx, req.backends.as_deref(), now, &seen)?
            {
                if !seen.insert(id.clone()) {
                    break;
                }
                let mut rec = Self::load_run(&table, &id)?;
                if self.settle_if_lapsed(&mut rec, &mut commands)? {
                    Self::save_run(&tx, &mut table, &rec)?;
                    continue;
                }
                if !labels_satisfy(&runner.labels, &rec.run.require_labels) {
                    continue;
                }
                let granted = self.grant(
                    &mut rec,
                    &mut commands,
                    &req.runner_id,
                    lease_ms,
                    req.placement.clone(),
                )?;
                Self::save_run(&tx, &mut table, &rec)?;
                if let Ok(granted) = granted {
                    lease = Some(granted);
                    break;
                }
            }
            lease
        };
        tx.commit()?;
        Ok(lease)
    }

    pub fn heartbeat(
        &self,
        run: &str,
        token: &str,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatReply> {
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        let reply = {
            let mut table = tx.open_table(RUNS)?;
            let mut rec = Self::load_run(&table, run)?;
            check_lease(&rec, token)?;
            let lease = rec.lease.as_mut().expect("checked");
            Self::touch_runner(&tx, &lease.runner_id, now, true)?;
            if let Some(s) = req.lease_seconds {
                lease.lease_ms = lease_ms(Some(s))?;
            }
            lease.expires_at_ms = now + lease.lease_ms;
            let expires = lease.expires_at_ms;
            rec.run.lease_expires_at_ms = Some(expires);
            rec.run.updated_at_ms = now;
            Self::save_run(&tx, &mut table, &rec)?;

            HeartbeatReply {
                lease_expires_at_ms: expires,
                lease_ms: rec.lease.as_ref().map_or(0, |l| l.lease_ms),
                run_status: rec.run.status,
                cancel_run: rec.run.cancel_requested,
                cancel_commands: commands_to_cancel(&tx.open_table(COMMANDS)?, run)?,
            }
        };
        tx.commit()?;
        Ok(reply)
    }

    /// The run's pending cancellation (read-only; what a runner watches during a turn).
    pub fn cancellation(&self, run: &str) -> Result<Cancellation> {
        let now = self.now_ms();
        let tx = self.db.begin_read()?;
        let rec: RunRecord = match tx.open_table(RUNS)?.get(run)? {
            Some(v) => decode(v.value())?,
            None => return Err(run_not_found(run)),
        };
        let view = rec.view(now);
        Ok(Cancellation {
            run_status: view.status,
            cancel_run: view.cancel_requested,
            cancel_commands: commands_to_cancel(&tx.open_table(COMMANDS)?, run)?,
        })
    }

    /// Client cancel. A run nobody works on (queued, or its lease expired) ends `cancelled` at once;
    /// a leased run gets `cancel_requested`, which its runner sees on the next heartbeat.
    pub fn cancel_run(&self, run: &str) -> Result<Run> {
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        let out = {
            let mut table = tx.open_table(RUNS)?;
            let mut rec = Self::load_run(&table, run)?;
            if !rec.run.status.is_terminal() {
                rec.run.cancel_requested = true;
                rec.run.updated_at_ms = now;
                if rec.lease_lapsed(now) {
                    rec.run.status = RunStatus::Cancelled;
                    rec.run.message = Some("cancelled before a runner took it".into());
                    let mut commands = tx.open_table(COMMANDS)?;
                    Self::cancel_unheld(&mut rec, &mut commands, now)?;
                }
                Self::save_run(&tx, &mut table, &rec)?;
            }
            rec.view(now)
        };
        tx.commit()?;
        Ok(out)
    }

    /// Terminal run status from the lease holder. Repeating it with the same lease is a no-op.
    pub fn set_run_status(&self, run: &str, token: &str, req: RunStatusUpdate) -> Result<Run> {
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        let out = {
            let mut table = tx.open_table(RUNS)?;
            let mut rec = Self::load_run(&table, run)?;
            let same_lease = rec.lease.as_ref().is_some_and(|l| l.token == token);
            if rec.run.status.is_terminal() && same_lease {
                return Ok(rec.view(now));
            }
            check_lease(&rec, token)?;
            let req = Self::apply_run_status_rule(&tx.open_table(COMMANDS)?, run, req)?;
            rec.run.status = req.status.into();
            rec.run.failure_kind = req.failure_kind;
            rec.run.message = req.message;
            rec.run.updated_at_ms = now;
            if let Some(l) = rec.lease.as_mut() {
                l.expires_at_ms = now;
            }
            rec.run.lease_expires_at_ms = None;
            Self::finish_attempt(&mut rec, &mut tx.open_table(COMMANDS)?, now)?;
            Self::save_run(&tx, &mut table, &rec)?;
            rec.view(now)
        };
        tx.commit()?;
        Ok(out)
    }
}
