//! Events of a run: idempotent append, reads for streams.

use redb::ReadableDatabase;

use super::{EVENTS, RUNS, Result, RunRecord, Store, check_lease, decode, encode, run_not_found};
use crate::error::ManagerError;
use crate::outcome::TurnEvent;
use crate::protocol::{AppendEvents, AppendReply, Run};

impl Store {
    /// Stores the events whose `seq` is above the run's highest stored one, in order; the others
    /// are duplicates of a retried batch and ignored.
    pub fn append_events(
        &self,
        run: &str,
        token: &str,
        mut req: AppendEvents,
    ) -> Result<AppendReply> {
        if let Some(e) = req.events.iter().find(|e| e.seq == 0) {
            return Err(ManagerError::BadRequest(format!(
                "event sequence numbers start at 1 (event of kind {:?} has 0)",
                e.kind
            )));
        }
        req.events.sort_by_key(|e| e.seq);
        let now = self.now_ms();
        let tx = self.db.begin_write()?;
        let reply = {
            let mut runs = tx.open_table(RUNS)?;
            let mut rec = Self::load_run(&runs, run)?;
            check_lease(&rec, token)?;
            // Each event carries the attempt that sent it, whatever the runner put there.
            let attempt = rec.lease.as_ref().map(|l| l.attempt_id.clone());
            let mut events = tx.open_table(EVENTS)?;
            let mut stored = 0;
            for e in &mut req.events {
                if e.seq > rec.run.last_event_seq {
                    e.attempt_id = attempt.clone().filter(|a| !a.is_empty());
                    e.received_at_ms = Some(now);
                    events.insert((run, e.seq), encode(e)?.as_slice())?;
                    rec.run.last_event_seq = e.seq;
                    stored += 1;
                }
            }
            // Saturates: a count past u64::MAX stays at the maximum instead of wrapping.
            rec.run.dropped_events = rec.run.dropped_events.saturating_add(req.dropped);
            if stored > 0 || req.dropped > 0 {
                rec.run.updated_at_ms = now;
                Self::save_run(&tx, &mut runs, &rec)?;
            }
            AppendReply {
                last_seq: rec.run.last_event_seq,
                stored,
                dropped_events: rec.run.dropped_events,
            }
        };
        tx.commit()?;
        Ok(reply)
    }

    /// Events with `seq > after`, at most `limit`, and the run's status, from one snapshot: when
    /// the status is terminal the list holds every remaining event (up to `limit`).
    pub fn events_after(
        &self,
        run: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<TurnEvent>, Run)> {
        let now = self.now_ms();
        let tx = self.db.begin_read()?;
        let runs = tx.open_table(RUNS)?;
        let rec: RunRecord = match runs.get(run)? {
            Some(v) => decode(v.value())?,
            None => return Err(run_not_found(run)),
        };
        let table = tx.open_table(EVENTS)?;
        let mut out = Vec::new();
        if after < u64::MAX {
            for entry in table.range((run, after + 1)..=(run, u64::MAX))?.take(limit) {
                let (_, v) = entry?;
                out.push(decode(v.value())?);
            }
        }
        Ok((out, rec.view(now)))
    }
}
