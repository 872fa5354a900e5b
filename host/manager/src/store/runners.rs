//! The fleet: when each runner was last seen, the runs it holds, and the labels a run requires.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::{RUNNERS, RUNS, Result, RunRecord, Store, decode, encode};
use crate::error::ManagerError;
use crate::protocol::{RunStatus, Runner, RunnerInfo};

/// Most labels a run may require, and the longest key or value.
pub const MAX_REQUIRED_LABELS: usize = 32;
pub const MAX_LABEL_CHARS: usize = 128;

/// Checks a run's required labels: bounded, no empty keys.
pub(super) fn check_required_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > MAX_REQUIRED_LABELS {
        return Err(ManagerError::BadRequest(format!(
            "require_labels has {} labels; at most {MAX_REQUIRED_LABELS}",
            labels.len()
        )));
    }
    for (key, value) in labels {
        if key.trim().is_empty() {
            return Err(ManagerError::BadRequest(
                "require_labels has an empty key".into(),
            ));
        }
        if key.chars().count() > MAX_LABEL_CHARS || value.chars().count() > MAX_LABEL_CHARS {
            return Err(ManagerError::BadRequest(format!(
                "require_labels `{}`: keys and values are at most {MAX_LABEL_CHARS} characters",
                key.chars().take(40).collect::<String>()
            )));
        }
    }
    Ok(())
}

impl Store {
    /// The registered runner `id`, with its labels; `404` when it never registered.
    pub(super) fn load_runner(tx: &WriteTransaction, id: &str) -> Result<Runner> {
        let table = tx.open_table(RUNNERS)?;
        match table.get(id)? {
            Some(v) => decode(v.value()),
            None => Err(ManagerError::NotFound(format!(
                "runner {id} is not registered"
            ))),
        }
    }

    /// Records that runner `id` was just seen (and heartbeated, when `heartbeat`); unknown ids
    /// are left alone.
    pub(super) fn touch_runner(
        tx: &WriteTransaction,
        id: &str,
        now: u64,
        heartbeat: bool,
    ) -> Result<()> {
        let mut table = tx.open_table(RUNNERS)?;
        let runner: Option<Runner> = match table.get(id)? {
            Some(v) => Some(decode(v.value())?),
            None => None,
        };
        if let Some(mut runner) = runner {
            runner.last_seen_ms = Some(now);
            if heartbeat {
                runner.last_heartbeat_ms = Some(now);
            }
            table.insert(id, encode(&runner)?.as_slice())?;
        }
        Ok(())
    }

    /// Every registered runner with the runs it holds a live lease on now, by id. Reads every
    /// run, like [`Store::list_runs`]: meant for fleets and stores of operator size.
    pub fn list_runners(&self) -> Result<Vec<RunnerInfo>> {
        let now = self.now_ms();
        let tx = self.db.begin_read()?;
        let mut held: HashMap<String, Vec<String>> = HashMap::new();
        for entry in tx.open_table(RUNS)?.iter()? {
            let (_, v) = entry?;
            let rec: RunRecord = decode(v.value())?;
            if rec.run.status != RunStatus::Running || rec.lease_lapsed(now) {
                continue;
            }
            if let Some(lease) = rec.lease.filter(|l| !l.released) {
                held.entry(lease.runner_id).or_default().push(rec.run.id);
            }
        }
        let mut runners = Vec::new();
        for entry in tx.open_table(RUNNERS)?.iter()? {
            let (_, v) = entry?;
            let runner: Runner = decode(v.value())?;
            let mut runs_held = held.remove(&runner.id).unwrap_or_default();
            runs_held.sort();
            runners.push(RunnerInfo {
                version: runner.labels.get("version").cloned(),
                runner,
                runs_held,
            });
        }
        Ok(runners)
    }
}
