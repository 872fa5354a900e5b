//! Commands of a run: enqueue, poll, ack, cancel, outcome.

use redb::{ReadableDatabase, ReadableTable};

use super::{
    COMMAND_IDS, COMMANDS, RUNS, Result, RunRecord, Store, check_id, check_lease, command_key,
    decode, encode, new_id, run_not_found,
};
use crate::error::ManagerError;
use crate::outcome::{TerminalStatus, TurnOutcome, run_outcome};
use crate::protocol::{Command, CommandBatch, CommandStatus, EnqueueCommand, RunStatusUpdate};
use crate::trace_context::TraceContext;

impl Store {
    pub fn enqueue(&self, run: &str, req: EnqueueCommand) -> Result<Command> {
        self.enqueue_traced(run, req, None)
    }

    /// Enqueues a command under the W3C trace context of the request that sent it; the run adopts
    /// it too when it has none yet (so the runner that claims the run joins the trace).
    pub fn enqueue_traced(
        &self,
        run: &str,
        req: EnqueueCommand,
        trace_context: Option<TraceContext>,
    ) -> Result<Command> {
        check_id(&req.id, "command")?;
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        let cmd = {
            let mut runs = tx.open_table(RUNS)?;
            let mut rec = Self::load_run(&runs, run)?;
            let mut ids = tx.open_table(COMMAND_IDS)?;
            let mut commands = tx.open_table(COMMANDS)?;
            if let Some(id) = &req.id
                && let Some(seq) = ids.get(command_key(run, id).as_str())?.map(|v| v.value())
            {
                let existing: Command = match commands.get((run, seq))? {
                    Some(v) => decode(v.value())?,
                    None => return Err(ManagerError::Storage(format!("command {id} lost"))),
                };
                if existing.prompt == req.prompt && existing.payload == req.payload {
                    return Ok(existing);
                }
                return Err(ManagerError::IdConflict(format!(
                    "command {id} already exists in run {run} with a different body"
                )));
            }
            if rec.run.status.is_terminal() {
                return Err(ManagerError::RunTerminal(format!(
                    "run {run} already ended: {}",
                    rec.run.status
                )));
            }
            let seq = rec.run.last_command_seq + 1;
            let cmd = Command {
                id: req.id.unwrap_or_else(|| new_id("cmd")),
                run_id: run.to_owned(),
                seq,
                prompt: req.prompt,
                payload: req.payload,
                status: CommandStatus::Queued,
                created_at_ms: now,
                acked_at_ms: None,
                finished_at_ms: None,
                cancel_requested: false,
                outcome: None,
                trace_context: trace_context.clone(),
            };
            commands.insert((run, seq), encode(&cmd)?.as_slice())?;
            ids.insert(command_key(run, &cmd.id).as_str(), seq)?;
            rec.run.last_command_seq = seq;
            rec.run.updated_at_ms = now;
            if rec.run.trace_context.is_none() {
                rec.run.trace_context = trace_context;
            }
            Self::save_run(&tx, &mut runs, &rec)?;
            cmd
        };
        tx.commit()?;
        Ok(cmd)
    }

    /// Commands with `seq > after`, at most `limit`, with the run's state.
    pub fn commands_after(&self, run: &str, after: u64, limit: usize) -> Result<CommandBatch> {
        let now = self.now_ms();
        let tx = self.db.begin_read()?;
        let runs = tx.open_table(RUNS)?;
        let rec: RunRecord = match runs.get(run)? {
            Some(v) => decode(v.value())?,
            None => return Err(run_not_found(run)),
        };
        let table = tx.open_table(COMMANDS)?;
        let mut commands = Vec::new();
        if after < u64::MAX {
            for entry in table.range((run, after + 1)..=(run, u64::MAX))?.take(limit) {
                let (_, v) = entry?;
                commands.push(decode(v.value())?);
            }
        }
        let view = rec.view(now);
        Ok(CommandBatch {
            commands,
            run_status: view.status,
            cancel_requested: view.cancel_requested,
        })
    }

    fn load_command(tx: &redb::WriteTransaction, run: &str, cmd: &str) -> Result<(u64, Command)> {
        find_command(
            &tx.open_table(COMMAND_IDS)?,
            &tx.open_table(COMMANDS)?,
            run,
            cmd,
        )
    }

    pub fn get_command(&self, run: &str, cmd: &str) -> Result<Command> {
        let tx = self.db.begin_read()?;
        let (_, command) = find_command(
            &tx.open_table(COMMAND_IDS)?,
            &tx.open_table(COMMANDS)?,
            run,
            cmd,
        )?;
        Ok(command)
    }

    /// Applies `f` to a command under the run's lease and stores the result.
    fn update_command(
        &self,
        run: &str,
        cmd: &str,
        token: Option<&str>,
        f: impl FnOnce(&mut Command, u64),
    ) -> Result<Command> {
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        let out = {
            let rec = Self::load_run(&tx.open_table(RUNS)?, run)?;
            if let Some(token) = token {
                check_lease(&rec, token)?;
            }
            let (seq, mut command) = Self::load_command(&tx, run, cmd)?;
            f(&mut command, now);
            tx.open_table(COMMANDS)?
                .insert((run, seq), encode(&command)?.as_slice())?;
            command
        };
        tx.commit()?;
        Ok(out)
    }

    /// The runner took the command. Acking again, or acking a cancelled command, changes nothing:
    /// the reply shows the command's status.
    pub fn ack(&self, run: &str, cmd: &str, token: &str) -> Result<Command> {
        self.update_command(run, cmd, Some(token), |c, now| {
            if c.status == CommandStatus::Queued {
                c.status = CommandStatus::Acked;
                c.acked_at_ms = Some(now);
            }
        })
    }

    /// Client cancel of one command: a queued one ends `cancelled` at once, an acked one gets
    /// `cancel_requested` (on the runner's next heartbeat), a finished one is left as it is.
    pub fn cancel_command(&self, run: &str, cmd: &str) -> Result<Command> {
        self.update_command(run, cmd, None, |c, now| {
            if !c.status.is_terminal() {
                c.cancel_requested = true;
                if c.status == CommandStatus::Queued {
                    c.status = CommandStatus::Cancelled;
                    c.finished_at_ms = Some(now);
                }
            }
        })
    }

    /// The turn's outcome, from the lease holder, for a command it acked. A repeat of the stored
    /// outcome changes nothing; any other change of a finished command (e.g. a cancelled one
    /// reported `completed`) and a status for a command never acked are refused.
    pub fn set_command_status(
        &self,
        run: &str,
        cmd: &str,
        token: &str,
        outcome: TurnOutcome,
    ) -> Result<Command> {
        let mut refused = None;
        let command = self.update_command(run, cmd, Some(token), |c, now| match c.status {
            CommandStatus::Acked => {
                c.status = outcome.status.into();
                c.finished_at_ms = Some(now);
                c.outcome = Some(outcome);
            }
            CommandStatus::Queued => {
                refused = Some(format!(
                    "command {cmd} of run {run} was never acked; ack it before reporting its status"
                ));
            }
            _ if c.outcome.as_ref() == Some(&outcome) => {}
            status => {
                refused = Some(format!(
                    "command {cmd} of run {run} already ended ({}); its status does not change",
                    serde_json::to_value(status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ));
            }
        })?;
        match refused {
            Some(message) => Err(ManagerError::CommandState(message)),
            None => Ok(command),
        }
    }
}

impl Store {
    /// A runner may not report `completed` for a run one of whose commands failed or was
    /// blocked: the run's status follows [`crate::outcome::run_outcome`] (docs/protocol.md).
    pub(super) fn apply_run_status_rule(
        commands: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
        run: &str,
        req: RunStatusUpdate,
    ) -> Result<RunStatusUpdate> {
        if req.status != TerminalStatus::Completed {
            return Ok(req);
        }
        let mut ran = Vec::new();
        for entry in commands.range((run, 0)..=(run, u64::MAX))? {
            let (_, v) = entry?;
            let cmd: Command = decode(v.value())?;
            if let Some(outcome) = cmd.outcome {
                ran.push((cmd.id, outcome));
            }
        }
        Ok(match run_outcome(&ran) {
            Some(ruled)
                if ruled.status != TerminalStatus::Completed
                    && ruled.status != TerminalStatus::Cancelled =>
            {
                RunStatusUpdate {
                    status: ruled.status,
                    failure_kind: ruled.failure_kind,
                    message: ruled.message,
                }
            }
            _ => req,
        })
    }
}

/// A command by id, through either a read or a write transaction's tables.
pub(super) fn find_command(
    ids: &impl ReadableTable<&'static str, u64>,
    commands: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    run: &str,
    cmd: &str,
) -> Result<(u64, Command)> {
    let seq = ids
        .get(command_key(run, cmd).as_str())?
        .map(|v| v.value())
        .ok_or_else(|| {
            ManagerError::NotFound(format!("command {cmd} of run {run} does not exist"))
        })?;
    let v = commands
        .get((run, seq))?
        .ok_or_else(|| ManagerError::Storage(format!("command {cmd} of run {run} lost")))?;
    Ok((seq, decode(v.value())?))
}
