//! Removing finished runs: `DELETE /v1/runs/{id}`, and the retention sweep that removes runs
//! finished longer ago than the manager's retention.
//!
//! A removed run's record goes at once (from then on the run is unknown: `404`), and its id is
//! put on the `runs_deleting` list; its commands and events are removed in batches of at most a
//! sweep's row budget, so no transaction holds the store for long whatever a run's size. An id
//! still on that list cannot be created again until its rows are gone.

use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::queue::{self, FINISHED};
use super::{COMMAND_IDS, COMMANDS, EVENTS, RUNS, Result, RunRecord, Store};
use crate::error::ManagerError;
use crate::protocol::RunStatus;

/// Runs whose record is gone and whose commands and events are being removed.
pub(super) const DELETING: TableDefinition<&str, ()> = TableDefinition::new("runs_deleting");

/// Rows (run records, commands, command ids, events) one sweep removes at most.
pub const SWEEP_ROWS: usize = 10_000;

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Runs removed because they finished longer ago than the retention.
    pub expired_runs: Vec<String>,
    /// Rows removed in all.
    pub rows_removed: u64,
    /// Work is left for the next sweep.
    pub more: bool,
}

/// Removes the run's record and queue entry and lists it for [`purge`].
fn remove_record(
    tx: &redb::WriteTransaction,
    runs: &mut redb::Table<&str, &[u8]>,
    rec: &RunRecord,
) -> Result<()> {
    runs.remove(rec.run.id.as_str())?;
    queue::reindex(tx, Some(rec), None)?;
    tx.open_table(DELETING)?.insert(rec.run.id.as_str(), ())?;
    Ok(())
}

/// Removes the commands and events of listed runs, at most `budget` rows; a run whose rows are
/// all gone leaves the list.
fn purge(tx: &redb::WriteTransaction, budget: &mut usize) -> Result<()> {
    let listed: Vec<String> = {
        let deleting = tx.open_table(DELETING)?;
        let mut ids = Vec::new();
        for entry in deleting.iter()?.take(*budget) {
            ids.push(entry?.0.value().to_owned());
        }
        ids
    };
    for run in listed {
        if *budget == 0 {
            break;
        }
        if purge_run(tx, &run, budget)? {
            tx.open_table(DELETING)?.remove(run.as_str())?;
        }
    }
    Ok(())
}

/// Removes up to `budget` rows of `run`; true when none is left.
fn purge_run(tx: &redb::WriteTransaction, run: &str, budget: &mut usize) -> Result<bool> {
    let mut events = tx.open_table(EVENTS)?;
    let seqs: Vec<u64> = events
        .range((run, 0)..=(run, u64::MAX))?
        .take(*budget + 1)
        .map(|e| e.map(|(k, _)| k.value().1))
        .collect::<std::result::Result<_, _>>()?;
    for seq in seqs.iter().take(*budget) {
        events.remove((run, *seq))?;
    }
    if seqs.len() > *budget {
        *budget = 0;
        return Ok(false);
    }
    *budget -= seqs.len();

    let mut commands = tx.open_table(COMMANDS)?;
    let seqs: Vec<u64> = commands
        .range((run, 0)..=(run, u64::MAX))?
        .take(*budget + 1)
        .map(|e| e.map(|(k, _)| k.value().1))
        .collect::<std::result::Result<_, _>>()?;
    for seq in seqs.iter().take(*budget) {
        commands.remove((run, *seq))?;
    }
    if seqs.len() > *budget {
        *budget = 0;
        return Ok(false);
    }
    *budget -= seqs.len();

    // Command ids are "run \0 command": every key from "run\0" up to "run\x01".
    let mut ids = tx.open_table(COMMAND_IDS)?;
    let (from, to) = (format!("{run}\0"), format!("{run}\u{1}"));
    let keys: Vec<String> = ids
        .range(from.as_str()..to.as_str())?
        .take(*budget + 1)
        .map(|e| e.map(|(k, _)| k.value().to_owned()))
        .collect::<std::result::Result<_, _>>()?;
    for key in keys.iter().take(*budget) {
        ids.remove(key.as_str())?;
    }
    if keys.len() > *budget {
        *budget = 0;
        return Ok(false);
    }
    *budget -= keys.len();

    let mut results = tx.open_table(super::results::RESULTS)?;
    let seqs: Vec<u64> = results
        .range((run, 0)..=(run, u64::MAX))?
        .take(*budget + 1)
        .map(|e| e.map(|(k, _)| k.value().1))
        .collect::<std::result::Result<_, _>>()?;
    for seq in seqs.iter().take(*budget) {
        results.remove((run, *seq))?;
    }
    if seqs.len() > *budget {
        *budget = 0;
        return Ok(false);
    }
    *budget -= seqs.len();
    // The blobs themselves go in the blob sweep, once no run refers to them.
    super::blobs::purge_blob_refs(tx, run, budget)
}

impl Store {
    /// Deletes a finished run with its commands and events. A run that has not ended (queued,
    /// or leased by a runner) is refused with `run-not-finished`: cancel it first.
    pub fn delete_run(&self, run: &str) -> Result<()> {
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        {
            let mut runs = tx.open_table(RUNS)?;
            let rec = Self::load_run(&runs, run)?;
            let view = rec.view(now);
            if !view.status.is_terminal() {
                let holder = match (&rec.lease, view.status) {
                    (Some(lease), RunStatus::Running) => {
                        format!(" (leased by runner {})", lease.runner_id)
                    }
                    _ => String::new(),
                };
                return Err(ManagerError::RunNotFinished(format!(
                    "run {run} is {}{holder}: only a finished run can be deleted; cancel it and \
                     delete it once it ended",
                    view.status
                )));
            }
            remove_record(&tx, &mut runs, &rec)?;
        }
        let mut budget = SWEEP_ROWS;
        purge(&tx, &mut budget)?;
        tx.commit()?;
        Ok(())
    }

    /// Whether a run id is still being deleted (its rows not all removed yet).
    pub(super) fn being_deleted(tx: &redb::WriteTransaction, run: &str) -> Result<bool> {
        Ok(tx.open_table(DELETING)?.get(run)?.is_some())
    }

    /// One sweep: removes rows of runs being deleted, then (with a `retention`) the runs that
    /// finished longer than `retention` ago, at most `max_rows` rows in all, in one transaction.
    /// A sweep with nothing to do writes nothing.
    pub fn sweep(&self, retention: Option<Duration>, max_rows: usize) -> Result<SweepReport> {
        let now = self.now_ms();
        let cutoff =
            retention.map(|r| now.saturating_sub(u64::try_from(r.as_millis()).unwrap_or(u64::MAX)));
        if !self.sweep_has_work(cutoff)? {
            return Ok(SweepReport::default());
        }
        let mut report = SweepReport::default();
        let mut budget = max_rows;
        let tx = self.db.begin_write()?;
        purge(&tx, &mut budget)?;
        if let Some(cutoff) = cutoff {
            let expired: Vec<(u64, String)> = {
                let finished = tx.open_table(FINISHED)?;
                let mut keys = Vec::new();
                for entry in finished.range(..(cutoff, ""))?.take(budget) {
                    let (key, _) = entry?;
                    let (at, id) = key.value();
                    keys.push((at, id.to_owned()));
                }
                keys
            };
            let mut runs = tx.open_table(RUNS)?;
            for (at, id) in expired {
                budget = budget.saturating_sub(1);
                match Self::load_run(&runs, &id) {
                    Ok(rec) => remove_record(&tx, &mut runs, &rec)?,
                    // An index entry without its run: drop it rather than stall every sweep.
                    Err(ManagerError::NotFound(_)) => {
                        tx.open_table(FINISHED)?.remove((at, id.as_str()))?;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                report.expired_runs.push(id);
            }
            drop(runs);
            purge(&tx, &mut budget)?;
        }
        report.rows_removed = (max_rows - budget) as u64;
        tx.commit()?;
        report.more = self.sweep_has_work(cutoff)?;
        Ok(report)
    }

    /// Whether a sweep would remove anything (a read transaction).
    fn sweep_has_work(&self, cutoff: Option<u64>) -> Result<bool> {
        let tx = self.db.begin_read()?;
        if !tx.open_table(DELETING)?.is_empty()? {
            return Ok(true);
        }
        Ok(match cutoff {
            Some(cutoff) => tx
                .open_table(FINISHED)?
                .range(..(cutoff, ""))?
                .next()
                .is_some(),
            None => false,
        })
    }
}
