//! Attempts: each claim of a run opens one, and it ends when the runner reports the run's end,
//! gives the run back (release), or lets its lease run out. A lost attempt is not a verdict on the
//! run: the run goes back to the queue, unless it ran out of attempts or the interrupted command
//! cannot be re-run on a fresh workspace (a command of the run already finished).

use std::time::Duration;

use redb::ReadableTable;

use super::{
    COMMANDS, LeaseRecord, RUNS, Result, RunRecord, Store, check_lease, decode, encode, new_id,
};
use crate::error::ManagerError;
use crate::outcome::{FailureKind, TurnOutcome};
use crate::protocol::{
    Attempt, AttemptEnd, Command, CommandStatus, DEFAULT_MAX_ATTEMPTS, Lease, Placement,
    ReleaseRequest, Run, RunStatus,
};

/// How a manager hands runs out again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeasePolicy {
    /// After a lease expires, how long the run stays unclaimable: room for the old runner's clock
    /// and kill to finish before anyone else may start on the run.
    pub regrant_gap: Duration,
    /// Attempts a run gets when it names none.
    pub max_attempts: u32,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        Self {
            regrant_gap: Duration::from_secs(1),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// The commands table of a write transaction.
type CommandsTable<'a> = redb::Table<'a, (&'static str, u64), &'static [u8]>;

impl RunRecord {
    fn open_attempt_mut(&mut self) -> Option<&mut Attempt> {
        self.run.attempts.last_mut().filter(|a| a.end.is_none())
    }

    /// The lease ran out and its safety gap passed: the run may be claimed again.
    pub(super) fn lease_lapsed(&self, now: u64) -> bool {
        self.lease
            .as_ref()
            .is_none_or(|l| l.expires_at_ms.saturating_add(l.gap_ms) <= now)
    }

    /// Why the run may not get another attempt, when it may not.
    pub(super) fn exhausted(&self) -> Option<String> {
        let max = self.run.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS) as usize;
        let ended = self.run.attempts.iter().filter(|a| a.end.is_some()).count();
        (ended >= max).then(|| {
            let each: Vec<String> = self
                .run
                .attempts
                .iter()
                .map(|a| {
                    let end = a.end.map_or("open", attempt_end_str);
                    format!("{} on runner {} ({end})", a.id, a.runner_id)
                })
                .collect();
            format!(
                "the run used all {max} of its attempts without finishing: {}",
                each.join("; ")
            )
        })
    }

    /// Closes the open attempt, if any.
    fn close_attempt(&mut self, end: AttemptEnd, message: Option<String>, now: u64) {
        if let Some(attempt) = self.open_attempt_mut() {
            attempt.end = Some(end);
            attempt.ended_at_ms = Some(now);
            attempt.message = message;
        }
    }

    /// Ends the run `failed` with `kind` and `message`.
    fn fail(&mut self, kind: FailureKind, message: String, now: u64) {
        self.run.status = RunStatus::Failed;
        self.run.failure_kind = Some(kind);
        self.run.message = Some(message);
        self.run.updated_at_ms = now;
        self.run.lease_expires_at_ms = None;
        self.lease = None;
    }
}

pub(super) fn attempt_end_str(end: AttemptEnd) -> &'static str {
    match end {
        AttemptEnd::Finished => "finished",
        AttemptEnd::Released => "released",
        AttemptEnd::LeaseExpired => "lease expired",
        AttemptEnd::RunEnded => "run ended",
    }
}

/// Every command of `run`, with its sequence number.
fn run_commands(commands: &CommandsTable<'_>, run: &str) -> Result<Vec<(u64, Command)>> {
    let mut out = Vec::new();
    for entry in commands.range((run, 0)..=(run, u64::MAX))? {
        let (k, v) = entry?;
        out.push((k.value().1, decode(v.value())?));
    }
    Ok(out)
}

fn save_command(
    commands: &mut CommandsTable<'_>,
    run: &str,
    seq: u64,
    cmd: &Command,
) -> Result<()> {
    commands.insert((run, seq), encode(cmd)?.as_slice())?;
    Ok(())
}

/// After an attempt was lost (released or expired): its interrupted commands are queued again
/// when every finished command of the run has its result stored whole (the next attempt restores
/// them over the bundle: the state they started from; trivially so when none finished yet);
/// otherwise they fail and so does the run, naming the lost attempt. A run out of attempts fails
/// too (its interrupted commands with it). Returns whether the run ended.
fn settle_lost_attempt(
    rec: &mut RunRecord,
    commands: &mut CommandsTable<'_>,
    lost: &str,
    now: u64,
) -> Result<bool> {
    let run = rec.run.id.clone();
    let all = run_commands(commands, &run)?;
    // A finished command whose result is stored whole can be restored by the next attempt.
    let finished = all.iter().find(|(seq, c)| {
        c.status.is_terminal() && c.outcome.is_some() && !rec.restorable.contains(seq)
    });
    let interrupted: Vec<_> = all
        .iter()
        .filter(|(_, c)| c.status == CommandStatus::Acked)
        .collect();
    if let (Some((_, done)), Some((_, first))) = (finished, interrupted.first()) {
        let message = format!(
            "attempt {lost} was lost while command {} ran; command {} had already finished and \
             its workspace changes cannot be restored (no whole result of it is stored), so the \
             command is not run again",
            first.id, done.id
        );
        rec.fail(FailureKind::LeaseLost, message.clone(), now);
        end_open_commands(commands, &run, &rec.run, now)?;
        return Ok(true);
    }
    if let Some(message) = rec.exhausted() {
        rec.fail(FailureKind::LeaseLost, message, now);
        end_open_commands(commands, &run, &rec.run, now)?;
        return Ok(true);
    }
    for (seq, cmd) in interrupted {
        let mut cmd = cmd.clone();
        cmd.status = CommandStatus::Queued;
        cmd.acked_at_ms = None;
        save_command(commands, &run, *seq, &cmd)?;
    }
    Ok(false)
}

/// The run ended: its commands still queued or running end too, so none waits forever. A running
/// one ends as the run did when the run failed, else `cancelled`; a queued one never ran and ends
/// `cancelled`.
pub(super) fn end_open_commands(
    commands: &mut CommandsTable<'_>,
    run: &str,
    ended: &Run,
    now: u64,
) -> Result<()> {
    for (seq, mut cmd) in run_commands(commands, run)? {
        if cmd.status.is_terminal() {
            continue;
        }
        let why = format!(
            "the run ended ({}) before this command finished",
            ended.status
        );
        let outcome = match (cmd.status, ended.status, ended.failure_kind) {
            (CommandStatus::Acked, RunStatus::Failed, Some(kind)) => {
                TurnOutcome::failed(kind, ended.message.clone().unwrap_or_else(|| why.clone()))
            }
            _ => TurnOutcome::cancelled(why),
        };
        cmd.status = outcome.status.into();
        cmd.acked_at_ms.get_or_insert(now);
        cmd.finished_at_ms = Some(now);
        cmd.outcome = Some(outcome);
        save_command(commands, run, seq, &cmd)?;
    }
    Ok(())
}

impl Store {
    /// Grants `runner_id` a lease on `rec`, opening a new attempt unless the runner re-claims its
    /// own live lease. A lapsed previous attempt is settled first; when that ends the run, the
    /// claim fails with `run-terminal` (the run record is still saved by the caller).
    pub(super) fn grant(
        &self,
        rec: &mut RunRecord,
        commands: &mut CommandsTable<'_>,
        runner_id: &str,
        lease_ms: u64,
        placement: Option<Placement>,
    ) -> Result<std::result::Result<Lease, ManagerError>> {
        let now = self.now_ms();
        if rec.run.status.is_terminal() {
            return Ok(Err(ManagerError::RunTerminal(format!(
                "run {} already ended: {}",
                rec.run.id, rec.run.status
            ))));
        }
        let own_live = rec
            .lease
            .as_ref()
            .is_some_and(|l| l.runner_id == runner_id && l.expires_at_ms > now);
        if !own_live && !rec.lease_lapsed(now) {
            let l = rec.lease.as_ref().expect("not lapsed, so leased");
            let free_at = l.expires_at_ms.saturating_add(l.gap_ms);
            return Ok(Err(ManagerError::LeaseConflict(format!(
                "run {} is leased by runner {} (attempt {}) for another {} ms",
                rec.run.id,
                l.runner_id,
                l.attempt_id,
                free_at.saturating_sub(now)
            ))));
        }
        if !own_live && let Some(open) = rec.open_attempt_mut() {
            let lost = open.id.clone();
            rec.close_attempt(
                AttemptEnd::LeaseExpired,
                Some("its lease ran out without a heartbeat".into()),
                now,
            );
            if settle_lost_attempt(rec, commands, &lost, now)? {
                return Ok(Err(ManagerError::RunTerminal(format!(
                    "run {} ended: {}",
                    rec.run.id,
                    rec.run.message.clone().unwrap_or_default()
                ))));
            }
        } else if !own_live && let Some(message) = rec.exhausted() {
            rec.fail(FailureKind::LeaseLost, message.clone(), now);
            end_open_commands(commands, &rec.run.id.clone(), &rec.run, now)?;
            return Ok(Err(ManagerError::RunTerminal(format!(
                "run {} ended: {message}",
                rec.run.id
            ))));
        }
        if !own_live {
            let number = rec.run.attempts.len() as u32 + 1;
            rec.run.attempts.push(Attempt {
                id: format!("att_{}_{number}", rec.run.id),
                number,
                runner_id: runner_id.to_owned(),
                placement: placement.unwrap_or_else(|| Placement {
                    kind: Placement::HOST_PROCESS.into(),
                    ..Placement::default()
                }),
                started_at_ms: now,
                ended_at_ms: None,
                end: None,
                message: None,
            });
        }
        let attempt = rec.run.attempts.last().expect("one is open");
        let lease = LeaseRecord {
            token: new_id("lease"),
            runner_id: runner_id.to_owned(),
            expires_at_ms: now + lease_ms,
            lease_ms,
            gap_ms: self.policy.regrant_gap.as_millis() as u64,
            attempt_id: attempt.id.clone(),
            released: false,
        };
        let (attempt_id, number) = (attempt.id.clone(), attempt.number);
        rec.run.status = RunStatus::Running;
        rec.run.runner_id = Some(runner_id.to_owned());
        rec.run.lease_expires_at_ms = Some(lease.expires_at_ms);
        rec.run.updated_at_ms = now;
        let out = Lease {
            run: rec.run.clone(),
            lease_token: lease.token.clone(),
            lease_expires_at_ms: lease.expires_at_ms,
            attempt_id,
            attempt: number,
            lease_ms,
        };
        rec.lease = Some(lease);
        Ok(Ok(out))
    }

    /// A claimable run found by claim-next that must end instead (out of attempts, or its lost
    /// attempt cannot be re-run): settles it. Returns whether it ended.
    pub(super) fn settle_if_lapsed(
        &self,
        rec: &mut RunRecord,
        commands: &mut CommandsTable<'_>,
    ) -> Result<bool> {
        let now = self.now_ms();
        if rec.run.status.is_terminal() || !rec.lease_lapsed(now) {
            return Ok(false);
        }
        if rec.run.cancel_requested {
            rec.close_attempt(
                AttemptEnd::RunEnded,
                Some("the run was cancelled".into()),
                now,
            );
            rec.run.status = RunStatus::Cancelled;
            rec.run.message = Some("cancelled while no runner held it".into());
            rec.run.updated_at_ms = now;
            rec.run.lease_expires_at_ms = None;
            rec.lease = None;
            end_open_commands(commands, &rec.run.id.clone(), &rec.run, now)?;
            return Ok(true);
        }
        if let Some(open) = rec.open_attempt_mut() {
            let lost = open.id.clone();
            rec.close_attempt(
                AttemptEnd::LeaseExpired,
                Some("its lease ran out without a heartbeat".into()),
                now,
            );
            rec.lease = None;
            rec.run.lease_expires_at_ms = None;
            rec.run.status = RunStatus::Queued;
            return settle_lost_attempt(rec, commands, &lost, now);
        }
        if let Some(message) = rec.exhausted() {
            rec.fail(FailureKind::LeaseLost, message, now);
            end_open_commands(commands, &rec.run.id.clone(), &rec.run, now)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The lease holder gives the run back: its attempt ends `released`, the run is queued again
    /// for the next attempt (or ends, see [`settle_lost_attempt`]). Releasing again with the same
    /// token changes nothing.
    pub fn release(&self, run: &str, token: &str, req: ReleaseRequest) -> Result<Run> {
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        let out = {
            let mut runs = tx.open_table(RUNS)?;
            let mut rec = Self::load_run(&runs, run)?;
            if rec
                .lease
                .as_ref()
                .is_some_and(|l| l.released && l.token == token)
            {
                return Ok(rec.view(now));
            }
            check_lease(&rec, token)?;
            let lost = rec.lease.as_ref().expect("checked").attempt_id.clone();
            let message = req
                .message
                .unwrap_or_else(|| "the runner gave the run back".into());
            rec.close_attempt(AttemptEnd::Released, Some(message), now);
            // The token is kept (marked released) so a retried release is recognised.
            if let Some(l) = rec.lease.as_mut() {
                l.released = true;
                l.expires_at_ms = now;
                l.gap_ms = 0;
            }
            rec.run.status = RunStatus::Queued;
            rec.run.lease_expires_at_ms = None;
            rec.run.updated_at_ms = now;
            let mut commands = tx.open_table(COMMANDS)?;
            if !settle_lost_attempt(&mut rec, &mut commands, &lost, now)?
                && rec.run.cancel_requested
            {
                rec.run.status = RunStatus::Cancelled;
                rec.run.message = Some("cancelled while no runner held it".into());
                end_open_commands(&mut commands, run, &rec.run, now)?;
            }
            Self::save_run(&tx, &mut runs, &rec)?;
            rec.view(now)
        };
        tx.commit()?;
        Ok(out)
    }

    /// The lease holder reported the run's end: close its attempt, end the run's open commands.
    pub(super) fn finish_attempt(
        rec: &mut RunRecord,
        commands: &mut CommandsTable<'_>,
        now: u64,
    ) -> Result<()> {
        rec.close_attempt(AttemptEnd::Finished, None, now);
        end_open_commands(commands, &rec.run.id.clone(), &rec.run, now)
    }

    /// A client cancelled a run nobody holds: close a lapsed attempt, end its commands.
    pub(super) fn cancel_unheld(
        rec: &mut RunRecord,
        commands: &mut CommandsTable<'_>,
        now: u64,
    ) -> Result<()> {
        rec.close_attempt(
            AttemptEnd::RunEnded,
            Some("the run was cancelled".into()),
            now,
        );
        rec.lease = None;
        rec.run.lease_expires_at_ms = None;
        end_open_commands(commands, &rec.run.id.clone(), &rec.run, now)
    }
}

/// Checks a run's `max_attempts` (when it names one).
pub(super) fn check_max_attempts(max: Option<u32>) -> Result<()> {
    match max {
        Some(n) if n == 0 || n > crate::protocol::MAX_ATTEMPTS_LIMIT => {
            Err(ManagerError::BadRequest(format!(
                "max_attempts must be between 1 and {}, got {n}",
                crate::protocol::MAX_ATTEMPTS_LIMIT
            )))
        }
        _ => Ok(()),
    }
}
