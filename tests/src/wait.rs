//! Waiting for a condition instead of sleeping for a guess: every wait is bounded, polls, and
//! panics with what it waited for, so a slow machine makes a test slower, never flaky, and a
//! broken one fails with a message instead of hanging.

use std::future::Future;
use std::time::Duration;

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds; panics naming `what` once `timeout` has passed.
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {timeout:?} for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] for a condition that needs no `.await`.
pub async fn until_sync(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    until(what, timeout, || std::future::ready(condition())).await
}

/// Waits until a manager (started in another process, say) answers `client`.
pub async fn manager_answers(client: &aac_host::manager::ManagerClient) {
    until("the manager to answer", Duration::from_secs(60), || async {
        client.list_runs(None).await.is_ok()
    })
    .await
}
