//! Child processes of the tests (the real `aac-host` binary): signalling one and collecting what it
//! printed, without blocking the test's runtime.

use std::process::{Child, Command};

/// Sends signal `name` (`TERM`, `INT`, `KILL`…) to `child`.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {} failed", child.id());
}

/// Waits for `child` to exit: its exit code (-1 when a signal ended it) and its stdout + stderr.
pub async fn wait(child: Child) -> (i32, String) {
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}
