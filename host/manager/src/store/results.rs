//! Command results: what each command changed in the run's workspace, stored by the runner (under
//! its lease, before the command's status) and read by clients. The diffs and file contents are
//! blobs ([`super::blobs`]); a result row holds their hashes and the metadata.

use redb::{ReadableDatabase, TableDefinition};

use super::{
    COMMAND_IDS, COMMANDS, RUNS, Result, Store, check_lease, decode, encode, run_not_found,
};
use crate::error::ManagerError;
use crate::results::CommandResult;

/// (run id, command seq) → the command's result.
pub(super) const RESULTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("results");

/// Most changed files one result may list.
pub const MAX_RESULT_FILES: usize = 100_000;

impl Store {
    /// Stores the result of `cmd` from the run's lease holder. Every blob it names must be stored
    /// already. Storing it again (a retry) replaces it.
    pub fn put_result(
        &self,
        run: &str,
        cmd: &str,
        token: &str,
        mut result: CommandResult,
    ) -> Result<CommandResult> {
        if result.files.len() > MAX_RESULT_FILES {
            return Err(ManagerError::BadRequest(format!(
                "a result lists at most {MAX_RESULT_FILES} files, this one {}",
                result.files.len()
            )));
        }
        let mut shas: Vec<&str> = result
            .diff_sha256
            .iter()
            .chain(&result.run_diff_sha256)
            .map(String::as_str)
            .collect();
        shas.extend(result.files.iter().filter_map(|f| f.sha256.as_deref()));
        for sha in &shas {
            super::blobs::check_sha(sha)?;
            if self.blobs.size(sha).is_none() {
                return Err(ManagerError::BadRequest(format!(
                    "the result names blob {sha}, which the manager does not have; upload it \
                     first (PUT /v1/blobs/{sha})"
                )));
            }
        }
        let tx = self.db.begin_write()?;
        {
            let mut runs = tx.open_table(RUNS)?;
            let mut rec = Self::load_run(&runs, run)?;
            check_lease(&rec, token)?;
            let (seq, _) = super::commands::find_command(
                &tx.open_table(COMMAND_IDS)?,
                &tx.open_table(COMMANDS)?,
                run,
                cmd,
            )?;
            result.command_id = cmd.to_owned();
            result.command_seq = seq;
            for sha in &shas {
                Self::add_blob_ref(&tx, run, sha)?;
            }
            tx.open_table(RESULTS)?
                .insert((run, seq), encode(&result)?.as_slice())?;
            let whole = !result.truncated && result.files.iter().all(|f| !f.omitted);
            rec.restorable.retain(|s| *s != seq);
            if whole {
                rec.restorable.push(seq);
            }
            Self::save_run(&tx, &mut runs, &rec)?;
        }
        tx.commit()?;
        Ok(result)
    }

    /// The stored results of `run`, in command order (at most `limit`).
    pub fn results(&self, run: &str, limit: usize) -> Result<Vec<CommandResult>> {
        let tx = self.db.begin_read()?;
        if tx.open_table(RUNS)?.get(run)?.is_none() {
            return Err(run_not_found(run));
        }
        let table = tx.open_table(RESULTS)?;
        let mut out = Vec::new();
        for entry in table.range((run, 0)..=(run, u64::MAX))?.take(limit) {
            out.push(decode(entry?.1.value())?);
        }
        Ok(out)
    }

    /// The stored result of one command of `run`.
    pub fn result_of(&self, run: &str, cmd: &str) -> Result<CommandResult> {
        let tx = self.db.begin_read()?;
        if tx.open_table(RUNS)?.get(run)?.is_none() {
            return Err(run_not_found(run));
        }
        let (seq, _) = super::commands::find_command(
            &tx.open_table(COMMAND_IDS)?,
            &tx.open_table(COMMANDS)?,
            run,
            cmd,
        )?;
        match tx.open_table(RESULTS)?.get((run, seq))? {
            Some(v) => decode(v.value()),
            None => Err(ManagerError::NotFound(format!(
                "command {cmd} of run {run} has no stored result (yet)"
            ))),
        }
    }
}
