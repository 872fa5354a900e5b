//! Wake-ups for long-polls and event followers: one `watch` channel per run whose value is bumped on
//! every change to the run (command, event, status, cancel). A waiter subscribes, reads the store,
//! then waits for a change, so no change between the read and the wait is missed.
//!
//! A run's channel exists only while someone waits on it: each [`Subscription`] removes the
//! channel when it is the last one to go, so requests on ids that do not exist, or that ended,
//! leave nothing behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

#[derive(Default)]
pub(crate) struct Hub {
    runs: Mutex<HashMap<String, watch::Sender<u64>>>,
    closing: AtomicBool,
}

/// One waiter on one run's changes, for as long as its request lasts.
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    run: String,
    rx: Option<watch::Receiver<u64>>,
}

impl Subscription {
    pub(crate) fn rx(&mut self) -> &mut watch::Receiver<u64> {
        self.rx.as_mut().expect("present until dropped")
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut runs = self.hub.lock();
        // Receivers are only added under this lock, so a count of zero stays zero.
        drop(self.rx.take());
        if runs
            .get(&self.run)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            runs.remove(&self.run);
        }
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn subscribe(self: &Arc<Self>, run: &str) -> Subscription {
        let rx = self
            .lock()
            .entry(run.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Subscription {
            hub: self.clone(),
            run: run.to_owned(),
            rx: Some(rx),
        }
    }

    /// How many runs have a waiter now.
    pub(crate) fn watched_runs(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn bump(&self, run: &str) {
        if let Some(tx) = self.lock().get(run) {
            tx.send_modify(|v| *v += 1);
        }
    }

    /// Bumps the run, then drops its channel: it ended, and waiters that saw the bump re-read the
    /// store, find it terminal and return. Later subscribers get a fresh channel.
    pub(crate) fn bump_and_forget(&self, run: &str) {
        if let Some(tx) = self.lock().remove(run) {
            tx.send_modify(|v| *v += 1);
        }
    }

    /// The server is shutting down: every waiter returns.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for tx in self.lock().values() {
            tx.send_modify(|v| *v += 1);
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }
}
