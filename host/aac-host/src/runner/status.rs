//! What a runner tells its status listener: whether it registered, whether its last exchange
//! with the manager (a claim poll or a heartbeat) succeeded, and the runs it holds.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Longest error text kept for the status body.
const MAX_ERROR_CHARS: usize = 500;

/// A runner's health, updated as it works; cheap to read from the status listener.
#[derive(Debug, Default)]
pub struct RunnerStatus {
    registered: AtomicBool,
    manager_ok: AtomicBool,
    last_ok_ms: AtomicU64,
    max_runs: AtomicUsize,
    last_error: Mutex<Option<String>>,
    runs: Mutex<BTreeMap<String, HeldRun>>,
}

/// A run this runner works on now.
#[derive(Clone, Debug, Serialize)]
pub struct HeldRun {
    pub run_id: String,
    pub attempt_id: String,
    pub backend: String,
    pub since_ms: u64,
}

/// The runner's state as its status listener shows it.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub ready: bool,
    pub registered: bool,
    /// The last claim poll or heartbeat reached the manager and was answered.
    pub manager_reachable: bool,
    /// When the manager last answered (unix ms; 0 if never).
    pub last_manager_contact_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub draining: bool,
    /// Most runs at once (pool mode).
    pub max_runs: usize,
    pub runs: Vec<HeldRun>,
    /// Warm sandboxes ready per runtime and image.
    pub pools: Vec<PoolFill>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PoolFill {
    pub pool: String,
    pub ready: usize,
    pub size: usize,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RunnerStatus {
    pub fn set_registered(&self) {
        self.registered.store(true, Ordering::Relaxed);
        self.manager_answered();
    }

    pub fn set_max_runs(&self, max_runs: usize) {
        self.max_runs.store(max_runs, Ordering::Relaxed);
    }

    /// The manager answered a request (whatever the answer).
    pub fn manager_answered(&self) {
        self.manager_ok.store(true, Ordering::Relaxed);
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A request to the manager failed: unreachable, or it answered with a server error.
    pub fn manager_failed(&self, error: &dyn std::fmt::Display) {
        self.manager_ok.store(false, Ordering::Relaxed);
        let text: String = error.to_string().chars().take(MAX_ERROR_CHARS).collect();
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }

    /// Records that this runner works on `run` until the guard is dropped.
    pub fn hold(self: &std::sync::Arc<Self>, run: HeldRun) -> HeldRunGuard {
        let id = run.run_id.clone();
        self.lock_runs().insert(id.clone(), run);
        HeldRunGuard {
            status: self.clone(),
            run_id: id,
        }
    }

    pub fn held_runs(&self) -> usize {
        self.lock_runs().len()
    }

    fn lock_runs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, HeldRun>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ready: registered, the last exchange with the manager succeeded, and not draining.
    pub fn report(&self, draining: bool, pools: Vec<PoolFill>) -> StatusReport {
        let registered = self.registered.load(Ordering::Relaxed);
        let manager_reachable = self.manager_ok.load(Ordering::Relaxed);
        StatusReport {
            ready: registered && manager_reachable && !draining,
            registered,
            manager_reachable,
            last_manager_contact_ms: self.last_ok_ms.load(Ordering::Relaxed),
            last_error: if manager_reachable {
                None
            } else {
                self.last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            },
            draining,
            max_runs: self.max_runs.load(Ordering::Relaxed),
            runs: self.lock_runs().values().cloned().collect(),
            pools,
        }
    }
}

/// Removes its run from the status when dropped, however the run's work ended.
pub struct HeldRunGuard {
    status: std::sync::Arc<RunnerStatus>,
    run_id: String,
}

impl Drop for HeldRunGuard {
    fn drop(&mut self) {
        self.status.lock_runs().remove(&self.run_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ready_needs_registration_a_reachable_manager_and_no_drain() {
        let status = Arc::new(RunnerStatus::default());
        assert!(!status.report(false, vec![]).ready, "not registered yet");
        status.set_registered();
        assert!(status.report(false, vec![]).ready);
        assert!(!status.report(true, vec![]).ready, "draining");
        status.manager_failed(&"connection refused");
        let report = status.report(false, vec![]);
        assert!(!report.ready);
        assert_eq!(report.last_error.as_deref(), Some("connection refused"));
        status.manager_answered();
        assert!(status.report(false, vec![]).ready);
    }

    #[test]
    fn a_held_run_is_listed_until_its_guard_drops() {
        let status = Arc::new(RunnerStatus::default());
        let guard = status.hold(HeldRun {
            run_id: "run_1".into(),
            attempt_id: "att_1".into(),
            backend: "shell".into(),
            since_ms: 1,
        });
        assert_eq!(status.report(false, vec![]).runs.len(), 1);
        drop(guard);
        assert_eq!(status.held_runs(), 0);
    }
}
