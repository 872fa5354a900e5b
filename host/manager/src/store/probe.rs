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
