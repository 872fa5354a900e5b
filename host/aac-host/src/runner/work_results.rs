//! A run's results on the runner: a bundle kept in the manager's blob store fetched before it is
//! materialized, the baseline recorded once the workspace is ready, each command's result stored
//! before its status, and the workspace removed once the run ended (see docs/results.md).

use std::path::{Path, PathBuf};

use tracing::{Instrument, info, warn};

use super::Runner;
use super::run_end::{RunEnd, guarded};
use super::work::RunWork;
use crate::manager::protocol::{BundleRef, Command};
use crate::manager::results::BLOB_BUNDLE_KIND;
use crate::outcome::{FailureKind, TurnOutcome};
use crate::plugin::BundleLimits;
use crate::plugin::materializer::ArchiveArrival;
use crate::results::turn::RunResults;

/// The kind of the event that says a command's result was cut short or could not be stored.
pub const RESULT_TRUNCATED: &str = "result.truncated";

/// Results of the run under way.
#[derive(Default)]
pub(super) struct ResultState {
    results: Option<RunResults>,
    /// Why results cannot be captured in this run (said once per command, as an event).
    unavailable: Option<String>,
}

/// Where this attempt keeps its own files: the run's directory, or `attempt-N` below it.
pub(super) fn attempt_dir(root: &Path, run: &str, attempt: u32) -> PathBuf {
    let run_dir = root.join(run);
    match attempt {
        0 | 1 => run_dir,
        n => run_dir.join(format!("attempt-{n}")),
    }
}

/// A bundle of the manager's blob store on its way into a local archive (fetched with the
/// runner's token): the materializer reads the file as it arrives and checks its hash over the
/// bytes it read, and the download stops when this is dropped.
pub(super) struct FetchingBundle {
    /// The local archive, as the materializer reads it.
    pub bundle: BundleRef,
    pub arrival: ArchiveArrival,
    _download: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts fetching `bundle` into `dir` when it is kept in the manager's blob store; `None` for
/// other bundles, which the materializer reads as they are.
pub(super) fn fetch_bundle(
    runner: &Runner,
    dir: PathBuf,
    bundle: &BundleRef,
    limits: &BundleLimits,
) -> Result<Option<FetchingBundle>, TurnOutcome> {
    if bundle.kind != BLOB_BUNDLE_KIND {
        return Ok(None);
    }
    let failed = |message: String| TurnOutcome::failed(FailureKind::ResourceBundle, message);
    let sha = bundle
        .sha256
        .clone()
        .filter(|sha| bundle.location == crate::manager::results::blob_path(sha))
        .ok_or_else(|| {
            failed(format!(
                "the bundle's location {:?} is not /v1/blobs/ followed by its sha256",
                bundle.location
            ))
        })?;
    let file = dir.join(format!("bundle-{sha}.tar"));
    // The materializer opens the file before the first byte arrives.
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::File::create(&file))
        .map_err(|e| failed(format!("cannot create {}: {e}", file.display())))?;
    // The archive: the files plus a header and padding per entry, plus the manifest.
    let max = limits
        .max_bytes
        .saturating_add(limits.max_files.saturating_mul(1536))
        .saturating_add(64 << 20);
    let (writer, arrival) = crate::plugin::materializer::arrival();
    let client = runner.client.clone();
    let target = file.clone();
    let blob = sha.clone();
    let download = async move {
        let got = {
            let mut written = |bytes: u64| writer.written(bytes);
            client
                .get_blob_to_file_as_it_arrives(&blob, &target, max, &mut written)
                .await
        };
        match got {
            Ok(size) => {
                info!(bytes = size, "bundle fetched from the manager");
                // Checked against `sha` by the download: what the materializer verifies.
                writer.complete(size, blob);
            }
            Err(e) => writer.failed(format!("could not fetch the bundle: {e}")),
        }
    };
    let task = tokio::spawn(download.instrument(tracing::Span::current()));
    Ok(Some(FetchingBundle {
        bundle: BundleRef {
            kind: "archive".into(),
            location: file.to_string_lossy().into_owned(),
            sha256: Some(sha),
            size: bundle.size,
        },
        arrival,
        _download: AbortOnDrop(task),
    }))
}

impl RunWork<'_> {
    pub(super) fn attempt_dir(&self) -> PathBuf {
        attempt_dir(
            &self.runner.config.workspace_root,
            &self.run.id,
            self.attempt,
        )
    }

    /// Records the workspace as materialized: the baseline of the run's diff. A later attempt
    /// then restores the stored results of the run's finished commands over it, and that state is
    /// the next command's baseline. `Err` is the outcome of the command that needed it: a
    /// workspace that cannot be restored must not be worked on.
    pub(super) async fn start_results(
        &mut self,
        workspace: &Path,
        user: &str,
    ) -> Result<(), TurnOutcome> {
        let git_dir = self.attempt_dir().join("results.git");
        let limit = self.runner.config.result_bytes;
        let mut results = match RunResults::start(git_dir, workspace.to_owned(), limit).await {
            Ok(results) => results,
            Err(err) => {
                warn!(error = %format!("{err:#}"), "results of this run cannot be captured");
                self.results.unavailable = Some(format!("{err:#}"));
                return Ok(());
            }
        };
        if self.attempt > 1 {
            let restored = guarded(
                &self.signals,
                &self.runner.shutdown,
                crate::results::restore::restore(
                    &self.runner.client,
                    &self.run.id,
                    &self.token,
                    workspace,
                ),
            )
            .await
            .map_err(|_| TurnOutcome::cancelled("the runner stopped while restoring"))?
            .map_err(|err| {
                TurnOutcome::failed(
                    FailureKind::HostError,
                    format!("could not restore the earlier attempts' results: {err:#}"),
                )
            })?;
            crate::sandbox::pool::give_to_user(workspace, user)
                .map_err(|err| TurnOutcome::failed(FailureKind::HostError, format!("{err:#}")))?;
            info!(
                commands = restored.commands,
                written = restored.written,
                deleted = restored.deleted,
                omitted = restored.omitted.len(),
                "restored the results of the run's finished commands"
            );
            if !restored.omitted.is_empty() {
                warn!(files = ?restored.omitted, "files whose content was never stored stay as the bundle had them");
            }
            if let Err(err) = results.rebase().await {
                warn!(error = %format!("{err:#}"), "results of this run cannot be captured");
                self.results.unavailable = Some(format!("{err:#}"));
                return Ok(());
            }
        }
        self.results.results = Some(results);
        Ok(())
    }

    /// Captures what `command` changed and stores it on the manager. A result past the limit, or
    /// one that cannot be captured or stored, is said with a `result.truncated` event; it never
    /// fails the run. `Err` only when the lease was lost or the runner shut down meanwhile.
    pub(super) async fn store_result(&mut self, command: &Command) -> Result<(), RunEnd> {
        if self.session.is_none() {
            return Ok(());
        }
        let problem = match &mut self.results.results {
            None => Some(format!(
                "the result could not be captured: {}",
                self.results.unavailable.as_deref().unwrap_or("no baseline")
            )),
            Some(results) => match results.capture().await {
                Err(err) => Some(format!("the result could not be captured: {err:#}")),
                Ok(captured) => {
                    let stored = guarded(
                        &self.signals,
                        &self.runner.shutdown,
                        results.store(
                            &self.runner.client,
                            &self.run.id,
                            &command.id,
                            &self.token,
                            captured,
                        ),
                    )
                    .await?;
                    match stored {
                        Ok(result) => {
                            info!(
                                added = result.added,
                                modified = result.modified,
                                deleted = result.deleted,
                                diff_bytes = result.diff_bytes,
                                truncated = result.truncated,
                                "result stored"
                            );
                            let reason = result.truncated_reason.clone();
                            self.report.results.push(result);
                            reason
                        }
                        Err(err) => Some(format!("the result could not be stored: {err:#}")),
                    }
                }
            },
        };
        if let Some(reason) = problem {
            warn!(%reason, "the command's result is incomplete");
            let limit = self.runner.config.result_bytes;
            if let Some(session) = self.session.as_mut() {
                session.host_event(
                    RESULT_TRUNCATED,
                    serde_json::json!({ "reason": reason, "result_bytes": limit }),
                );
            }
        }
        Ok(())
    }
}

/// Removes a finished attempt's directory (workspace, shadow repository, fetched bundle): its
/// results are on the manager. Kept with `keep_workspaces`; a fixed workspace (`aac-host run
/// --workspace`) is never removed, only the attempt's own files beside it.
pub(super) fn remove_workspace(config: &super::RunnerConfig, attempt_dir: &Path) {
    if config.keep_workspaces || !attempt_dir.exists() {
        return;
    }
    if let Some(fixed) = &config.workspace
        && fixed.starts_with(attempt_dir)
    {
        let _ = std::fs::remove_dir_all(attempt_dir.join("results.git"));
        return;
    }
    match std::fs::remove_dir_all(attempt_dir) {
        Ok(()) => info!(dir = %attempt_dir.display(), "removed the run's workspace"),
        Err(err) => warn!(
            dir = %attempt_dir.display(),
            error = %err,
            "could not remove the run's workspace"
        ),
    }
}
