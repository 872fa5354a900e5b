//! Shutdown by signal: the first SIGTERM (or Ctrl-C) drains — finish the current turn, report, take
//! no new work — and the second cancels the turns still running.

use tokio_util::sync::CancellationToken;

/// The two stages of a shutdown, shared by every run of a runner process.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    abort: CancellationToken,
}

/// What a shutdown request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownStage {
    Drain,
    Abort,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves to the next stage: drain first, then abort.
    pub fn request(&self) -> ShutdownStage {
        if self.drain.is_cancelled() {
            self.abort.cancel();
            ShutdownStage::Abort
        } else {
            self.drain.cancel();
            ShutdownStage::Drain
        }
    }

    /// Cancelled once no new work may start.
    pub fn draining(&self) -> &CancellationToken {
        &self.drain
    }

    /// Cancelled once running turns must stop.
    pub fn aborting(&self) -> &CancellationToken {
        &self.abort
    }

    /// Turns SIGTERM and SIGINT into [`Shutdown::request`] for the life of the process. With a
    /// `drain_timeout`, a drain that has not ended that long after the first signal goes on as if
    /// a second had come (so a service manager's stop timeout can be matched to it).
    pub fn listen_for_signals(
        &self,
        drain_timeout: Option<std::time::Duration>,
    ) -> std::io::Result<()> {
        let mut signals = ProcessSignals::listen()?;
        let shutdown = self.clone();
        tokio::spawn(async move {
            loop {
                if !signals.next().await {
                    return;
                }
                match shutdown.request() {
                    ShutdownStage::Drain => {
                        tracing::warn!(
                            "shutdown requested: finishing the current turns (signal again to cancel them)"
                        );
                        if let Some(timeout) = drain_timeout {
                            let abort = shutdown.abort.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(timeout).await;
                                if !abort.is_cancelled() {
                                    tracing::warn!(
                                        ?timeout,
                                        "the drain timeout passed: cancelling the running turns"
                                    );
                                    abort.cancel();
                                }
                            });
                        }
                    }
                    ShutdownStage::Abort => {
                        tracing::warn!("second signal: cancelling the running turns")
                    }
                }
            }
        });
        Ok(())
    }
}

/// SIGTERM and SIGINT, which every aac-host process treats alike.
pub struct ProcessSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ProcessSignals {
    pub fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT; false when neither can arrive any more.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            Some(()) = self.term.recv() => true,
            Some(()) = self.int.recv() => true,
            else => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_drains_second_aborts() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.draining().is_cancelled());
        assert_eq!(shutdown.request(), ShutdownStage::Drain);
        assert!(shutdown.draining().is_cancelled() && !shutdown.aborting().is_cancelled());
        assert_eq!(shutdown.request(), ShutdownStage::Abort);
        assert!(shutdown.aborting().is_cancelled());
    }
}
