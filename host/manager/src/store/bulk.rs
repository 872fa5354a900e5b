//! Filling a store in bulk, for benchmarks and load tests: finished runs stored and indexed
//! exactly as the API stores them, but many to a transaction instead of one each.

use super::{RUNS, Result, RunRecord, Store};

/// Runs per transaction.
const BATCH: u64 = 10_000;

impl Store {
    /// Stores `count` `completed` runs of `backend` with ids `{prefix}-{n}`, created now.
    pub fn insert_finished_runs(&self, prefix: &str, backend: &str, count: u64) -> Result<()> {
        let now = self.now_ms();
        let mut n = 0;
        while n < count {
            let tx = self.db.begin_write()?;
            {
                let mut table = tx.open_table(RUNS)?;
                for _ in 0..BATCH.min(count - n) {
                    let run = serde_json::from_value(serde_json::json!({
                        "id": format!("{prefix}-{n}"),
                        "status": "completed",
                        "backend": backend,
                        "created_at_ms": now,
                        "updated_at_ms": now,
                    }))?;
                    Self::save_run(
                        &tx,
                        &mut table,
                        &RunRecord {
                            run,
                            lease: None,
                            restorable: Vec::new(),
                        },
                    )?;
                    n += 1;
                }
            }
            tx.commit()?;
        }
        Ok(())
    }
}
