//! A cheap read of the store, for the manager's readiness check.

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::{RUNS, Result, Store};

impl Store {
    /// Opens a read transaction and reads the run table's length: `Ok` when the file answers.
    pub fn probe(&self) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RUNS)?;
        Ok(table.len()?)
    }
}

/// Counts over every stored run, for the metrics scrape.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Runs by status name (`queued`, `running`…).
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// When the oldest queued run was created (unix ms).
    pub oldest_queued_ms: Option<u64>,
}

impl Store {
    /// Runs by status and the oldest queued run. Reads every run (as `GET /v1/runs` does); its cost
    /// at 10 000 runs is in docs/benchmarks.md.
    pub fn run_stats(&self) -> Result<RunStats> {
        let now = self.now_ms();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RUNS)?;
        let mut stats = RunStats::default();
        for entry in redb::ReadableTable::iter(&table)? {
            let (_, v) = entry?;
            let run = super::decode::<super::RunRecord>(v.value())?.view(now);
            *stats.by_status.entry(run.status.to_string()).or_default() += 1;
            if run.status == crate::protocol::RunStatus::Queued {
                let oldest = stats.oldest_queued_ms.get_or_insert(run.created_at_ms);
                *oldest = (*oldest).min(run.created_at_ms);
            }
        }
        Ok(stats)
    }
}
