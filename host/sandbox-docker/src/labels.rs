//! Labels on every container this host creates, and the owner identity that lets a reaper tell a
//! live host's containers from a crashed one's.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

pub const MANAGED: &str = "dev.aac-host.managed";
pub const RUNNER: &str = "dev.aac-host.runner";
/// `<boot id>:<pid namespace>:<pid>` of the host process that created the container.
pub const OWNER: &str = "dev.aac-host.owner";
pub const RUN: &str = "dev.aac-host.run";
/// `runtime@version`.
pub const RUNTIME: &str = "dev.aac-host.runtime";
/// Unix seconds after which any reaper may remove the container.
pub const EXPIRES: &str = "dev.aac-host.expires";
/// Set on warm-pool containers not yet handed to a run.
pub const POOL: &str = "dev.aac-host.pool";

/// This process's owner label value.
pub fn owner() -> String {
    format!("{}:{}:{}", boot_id(), pid_namespace(), std::process::id())
}

/// True when the owner label names a host process that no longer exists on this machine. A
/// process of another PID namespace (an aac-host in a container sharing the engine) cannot be
/// looked up, so it counts as alive: its containers are left to their expiry.
pub fn owner_is_gone(owner: &str) -> bool {
    let parts: Vec<&str> = owner.split(':').collect();
    let (boot, namespace, pid) = match parts.as_slice() {
        [boot, namespace, pid] => (*boot, Some(*namespace), *pid),
        [boot, pid] => (*boot, None, *pid),
        _ => return true,
    };
    if boot != boot_id() {
        // Created before the last reboot: that process is gone.
        return true;
    }
    if namespace.is_some_and(|ns| ns != pid_namespace()) {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => true,
    }
}

/// The inode number of this process's PID namespace (`pid:[4026531836]` → `4026531836`).
fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|link| {
            let text = link.to_string_lossy().into_owned();
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            (!digits.is_empty()).then_some(digits)
        })
        .unwrap_or_else(|| "0".into())
}

pub fn expired(labels: &HashMap<String, String>, now: SystemTime) -> bool {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    labels
        .get(EXPIRES)
        .and_then(|value| value.parse::<u64>().ok())
        .is_some_and(|expires| expires <= now)
}

pub fn unix_seconds(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|_| "unknown-boot".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_not_gone_and_a_dead_pid_is() {
        assert!(!owner_is_gone(&owner()));
        let dead = format!("{}:{}:{}", boot_id(), pid_namespace(), u32::MAX - 1);
        assert!(owner_is_gone(&dead));
        let old_format = format!("{}:{}", boot_id(), u32::MAX - 1);
        assert!(owner_is_gone(&old_format));
        let other_namespace = format!("{}:1:{}", boot_id(), u32::MAX - 1);
        assert!(!owner_is_gone(&other_namespace), "cannot tell, so kept");
        assert!(owner_is_gone("another-boot:1"));
        assert!(owner_is_gone("garbage"));
    }
}
