//! When and how long `ManagerClient` retries.

use std::time::Duration;

use rand::Rng;

/// When and how long to retry.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial_backoff: Duration,
    /// Largest delay between two attempts.
    pub max_backoff: Duration,
    /// Growth of the delay per attempt.
    pub multiplier: f64,
    /// Fraction of each delay that is random: 0.5 means a delay in [d/2, d].
    pub jitter: f64,
    /// No retry starts later than this after the first attempt.
    pub deadline: Duration,
    /// A `Retry-After` larger than this is cut to it.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            deadline: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        Self {
            deadline: Duration::ZERO,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (1-based), jitter included.
    pub fn backoff(&self, retry: u32) -> Duration {
        let base = self.initial_backoff.as_secs_f64()
            * self
                .multiplier
                .max(1.0)
                .powi(retry.saturating_sub(1).min(64) as i32);
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter * rand::rng().random::<f64>();
        Duration::from_secs_f64(capped * factor)
    }
}
