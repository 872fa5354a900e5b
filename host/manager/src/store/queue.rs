//! The queue index: which runs a claim may take, found without reading every run ever stored.
//!
//! Every run is in exactly one slot, derived from its record alone by [`slot`]:
//!
//! * waiting — unfinished and never leased: `(backend, created_at_ms, id)`;
//! * leased — unfinished with a lease: `(backend, lapses_at_ms, id) → created_at_ms`; claimable
//!   again once the lease lapsed;
//! * finished — `(finished_at_ms, id)`: what retention removes, oldest first.
//!
//! [`super::Store::save_run`] moves a run between slots on every write, so the index cannot drift
//! from the records. A claim looks at the first entry of each wanted backend in the waiting and
//! leased tables: `O(backends × log runs)`, the same at a thousand and a million stored runs.

use std::collections::BTreeSet;

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::{LeaseRecord, RUNS, Result, RunRecord, decode};
use crate::error::ManagerError;

const WAITING: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("queue_waiting");
const LEASED: TableDefinition<(&str, u64, &str), u64> = TableDefinition::new("queue_leased");
pub(super) const FINISHED: TableDefinition<(u64, &str), ()> = TableDefinition::new("runs_finished");
/// Store-wide settings; here, which version of the index the file holds.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INDEX_VERSION_KEY: &str = "queue_index_version";
const INDEX_VERSION: u64 = 1;
/// Most backend profiles one claim may name.
pub const MAX_CLAIM_BACKENDS: usize = 256;
/// Most claimable runs one claim passes over because the runner lacks their required labels;
/// past it the claim answers "none" and the runner polls again.
pub const MAX_PASSED_OVER: usize = 1024;

/// Where a run sits in the index.
#[derive(Debug, PartialEq, Eq)]
enum Slot<'a> {
    Waiting {
        backend: &'a str,
        created: u64,
        id: &'a str,
    },
    Leased {
        backend: &'a str,
        lapses: u64,
        created: u64,
        id: &'a str,
    },
    Finished {
        at: u64,
        id: &'a str,
    },
}

/// When a lease stops protecting its run: from then on another runner may claim it. The safety
/// gap after expiry gives a runner that lost contact time to have killed its turn (see
/// `RunRecord::lease_lapsed`, which this must agree with).
fn lapses_at(lease: &LeaseRecord) -> u64 {
    lease.expires_at_ms.saturating_add(lease.gap_ms)
}

fn slot(rec: &RunRecord) -> Slot<'_> {
    let (backend, id, created) = (
        rec.run.backend.as_str(),
        rec.run.id.as_str(),
        rec.run.created_at_ms,
    );
    if rec.run.status.is_terminal() {
        return Slot::Finished {
            at: rec.run.updated_at_ms,
            id,
        };
    }
    match &rec.lease {
        None => Slot::Waiting {
            backend,
            created,
            id,
        },
        Some(lease) => Slot::Leased {
            backend,
            lapses: lapses_at(lease),
            created,
            id,
        },
    }
}

impl Slot<'_> {
    fn insert(&self, tx: &WriteTransaction) -> Result<()> {
        match *self {
            Slot::Waiting {
                backend,
                created,
                id,
            } => {
                tx.open_table(WAITING)?.insert((backend, created, id), ())?;
            }
            Slot::Leased {
                backend,
                lapses,
                created,
                id,
            } => {
                tx.open_table(LEASED)?
                    .insert((backend, lapses, id), created)?;
            }
            Slot::Finished { at, id } => {
                tx.open_table(FINISHED)?.insert((at, id), ())?;
            }
        }
        Ok(())
    }

    fn remove(&self, tx: &WriteTransaction) -> Result<()> {
        match *self {
            Slot::Waiting {
                backend,
                created,
                id,
            } => {
                tx.open_table(WAITING)?.remove((backend, created, id))?;
            }
            Slot::Leased {
                backend,
                lapses,
                id,
                ..
            } => {
                tx.open_table(LEASED)?.remove((backend, lapses, id))?;
            }
            Slot::Finished { at, id } => {
                tx.open_table(FINISHED)?.remove((at, id))?;
            }
        }
        Ok(())
    }
}

/// Moves a run from the slot of its `old` record to that of its `new` one (`None`: not stored).
pub(super) fn reindex(
    tx: &WriteTransaction,
    old: Option<&RunRecord>,
    new: Option<&RunRecord>,
) -> Result<()> {
    let (old, new) = (old.map(slot), new.map(slot));
    if old == new {
        return Ok(());
    }
    if let Some(old) = old {
        old.remove(tx)?;
    }
    if let Some(new) = new {
        new.insert(tx)?;
    }
    Ok(())
}

/// Creates the index tables, and fills them from the runs of a store written before the index
/// existed (once; one pass over the runs).
pub(super) fn ensure_index(db: &Database) -> Result<()> {
    let tx = db.begin_write()?;
    let version = tx
        .open_table(META)?
        .get(INDEX_VERSION_KEY)?
        .map(|v| v.value());
    if version != Some(INDEX_VERSION) {
        tx.delete_table(WAITING)?;
        tx.delete_table(LEASED)?;
        tx.delete_table(FINISHED)?;
        let runs = tx.open_table(RUNS)?;
        let mut indexed = 0u64;
        for entry in runs.iter()? {
            let (_, v) = entry?;
            let rec: RunRecord = decode(v.value())?;
            slot(&rec).insert(&tx)?;
            indexed += 1;
        }
        drop(runs);
        tx.open_table(META)?
            .insert(INDEX_VERSION_KEY, INDEX_VERSION)?;
        if indexed > 0 {
            tracing::info!(runs = indexed, "built the queue index of an older store");
        }
    }
    tx.open_table(WAITING)?;
    tx.open_table(LEASED)?;
    tx.open_table(FINISHED)?;
    tx.commit()?;
    Ok(())
}

/// The distinct backends with an entry in `table`: one seek per backend, skipping its runs.
fn backends_in<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, u64, &'static str), V>,
    out: &mut BTreeSet<String>,
) -> Result<()> {
    let mut from = String::new();
    loop {
        let next = match table.range((from.as_str(), 0u64, "")..)?.next() {
            Some(entry) => entry?.0.value().0.to_owned(),
            None => return Ok(()),
        };
        // The smallest string after every string that starts with `next`.
        from = format!("{next}\0");
        out.insert(next);
    }
}

/// The id of the oldest claimable run of `backends` (any backend when `None`) at `now`: the
/// oldest waiting run, or a run whose lease lapsed (per backend, the one that lapsed first),
/// whichever was created first.
pub(super) fn next_claimable(
    tx: &WriteTransaction,
    backends: Option<&[String]>,
    now: u64,
    skip: &std::collections::HashSet<String>,
) -> Result<Option<String>> {
    let waiting = tx.open_table(WAITING)?;
    let leased = tx.open_table(LEASED)?;
    let wanted: BTreeSet<String> = match backends {
        Some(list) if list.len() > MAX_CLAIM_BACKENDS => {
            return Err(ManagerError::BadRequest(format!(
                "backends lists {} profiles; at most {MAX_CLAIM_BACKENDS}",
                list.len()
            )));
        }
        Some(list) => list.iter().cloned().collect(),
        None => {
            let mut all = BTreeSet::new();
            backends_in(&waiting, &mut all)?;
            backends_in(&leased, &mut all)?;
            all
        }
    };
    let mut best: Option<(u64, String)> = None;
    let mut consider = |created: u64, id: &str| {
        if best
            .as_ref()
            .is_none_or(|(c, i)| (created, id) < (*c, i.as_str()))
        {
            best = Some((created, id.to_owned()));
        }
    };
    // Per backend, the oldest waiting run and the longest-lapsed leased run not in `skip`.
    for backend in &wanted {
        let b = backend.as_str();
        for entry in waiting.range((b, 0u64, "")..)? {
            let (key, _) = entry?;
            let (kb, created, id) = key.value();
            if kb != b {
                break;
            }
            if !skip.contains(id) {
                consider(created, id);
                break;
            }
        }
        for entry in leased.range((b, 0u64, "")..)? {
            let (key, created) = entry?;
            let (kb, lapses, id) = key.value();
            if kb != b || lapses > now {
                break;
            }
            if !skip.contains(id) {
                consider(created.value(), id);
                break;
            }
        }
    }
    Ok(best.map(|(_, id)| id))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{ManualClock, Store};

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_store_written_before_the_index_is_indexed_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        let clock = Arc::new(ManualClock::default());
        {
            let store = Store::open(&path, clock.clone()).unwrap();
            store
                .register_runner(from(serde_json::json!({"id": "r"})))
                .unwrap();
            for id in ["a", "b"] {
                store
                    .create_run(from(serde_json::json!({"id": id, "backend": "shell"})))
                    .unwrap();
            }
            store.cancel_run("a").unwrap();
            // Forget the index, as in a file written before it existed.
            let tx = store.db.begin_write().unwrap();
            assert!(tx.delete_table(WAITING).unwrap());
            assert!(tx.delete_table(LEASED).unwrap());
            assert!(tx.delete_table(FINISHED).unwrap());
            assert!(tx.delete_table(META).unwrap());
            tx.commit().unwrap();
        }
        let store = Store::open(&path, clock).unwrap();
        let lease = store
            .claim_next(from(serde_json::json!({"runner_id": "r"})))
            .unwrap()
            .expect("b is queued");
        assert_eq!(lease.run.id, "b");
        assert!(
            store
                .claim_next(from(serde_json::json!({"runner_id": "r"})))
                .unwrap()
                .is_none()
        );
    }
}
