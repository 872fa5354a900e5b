//! A session's lifetime limits: an idle timeout between turns and a maximum total duration.

use std::time::Duration;

use tokio::time::Instant;

/// Why a session's lifetime ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifetimeEnd {
    Idle,
    MaxDuration,
}

#[derive(Clone, Debug)]
pub struct SessionLifetime {
    started: Instant,
    last_active: Instant,
    pub idle_timeout: Duration,
    pub max_duration: Duration,
}

impl SessionLifetime {
    pub fn new(idle_timeout: Duration, max_duration: Duration) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last_active: now,
            idle_timeout,
            max_duration,
        }
    }

    /// A turn ended (or started): the idle clock restarts.
    pub fn touch(&mut self) {
        self.last_active = Instant::now();
    }

    /// When the session must end at the latest, whatever it is doing.
    pub fn max_deadline(&self) -> Instant {
        self.started + self.max_duration
    }

    /// When the session ends if no turn starts before.
    pub fn idle_deadline(&self) -> Instant {
        (self.last_active + self.idle_timeout).min(self.max_deadline())
    }

    /// Whether the session has ended at `now`, and why.
    pub fn ended(&self, now: Instant) -> Option<LifetimeEnd> {
        if now >= self.max_deadline() {
            Some(LifetimeEnd::MaxDuration)
        } else if now >= self.last_active + self.idle_timeout {
            Some(LifetimeEnd::Idle)
        } else {
            None
        }
    }
}

impl Default for SessionLifetime {
    /// AgentCube's defaults: 15 minutes idle, 8 hours in all.
    fn default() -> Self {
        Self::new(Duration::from_secs(15 * 60), Duration::from_secs(8 * 3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_and_max_duration_end_a_session() {
        let mut lifetime = SessionLifetime::new(Duration::from_secs(60), Duration::from_secs(300));
        assert_eq!(lifetime.ended(Instant::now()), None);
        tokio::time::advance(Duration::from_secs(59)).await;
        lifetime.touch();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(
            lifetime.ended(Instant::now()),
            None,
            "touch restarts the idle clock"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(lifetime.ended(Instant::now()), Some(LifetimeEnd::Idle));
        lifetime.touch();
        tokio::time::advance(Duration::from_secs(200)).await;
        assert_eq!(
            lifetime.ended(Instant::now()),
            Some(LifetimeEnd::MaxDuration)
        );
        assert!(lifetime.idle_deadline() <= lifetime.max_deadline());
    }
}
