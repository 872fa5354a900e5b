//! Wake-ups for long-polls and event followers: one `watch` channel per run whose value is bumped on
//! every change to the run (command, event, status, cancel). A waiter subscribes, reads the store,
//! then waits for a change, so no change between the read and the wait is missed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

#[derive(Default)]
pub(crate) struct Hub {
    runs: Mutex<HashMap<String, watch::Sender<u64>>>,
    closing: AtomicBool,
}

impl Hub {
    pub(crate) fn subscribe(&self, run: &str) -> watch::Receiver<u64> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.entry(run.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub(crate) fn bump(&self, run: &str) {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = runs.get(run) {
            tx.send_modify(|v| *v += 1);
        }
    }

    /// Bumps the run, then drops its channel: it ended, and waiters that saw the bump re-read the
    /// store, find it terminal and return. Later subscribers get a fresh channel.
    pub(crate) fn bump_and_forget(&self, run: &str) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = runs.remove(run) {
            tx.send_modify(|v| *v += 1);
        }
    }

    /// The server is shutting down: every waiter returns.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        for tx in runs.values() {
            tx.send_modify(|v| *v += 1);
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }
}
