//! The manager's tokens and TLS from the command line: `--token` (an admin token) and
//! `--token-file` (`role:token` lines, re-read on SIGHUP), `--tls-cert`/`--tls-key`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};

use crate::manager::server::Manager;
use crate::manager::tokens::{Role, TokenSet};

/// Where the manager's tokens come from.
#[derive(Clone, Debug)]
pub(super) struct TokenSources {
    /// `--token` / `AAC_MANAGER_TOKEN`: one admin token, fixed for the process's life.
    pub admin: Option<String>,
    /// `--token-file`: read at start and on each SIGHUP.
    pub file: Option<PathBuf>,
}

impl TokenSources {
    /// The tokens the sources hold now.
    pub fn read(&self) -> Result<TokenSet> {
        let mut tokens = match &self.file {
            Some(file) => TokenSet::read_file(file)?,
            None => TokenSet::default(),
        };
        if let Some(admin) = &self.admin {
            tokens
                .add(Role::Admin, admin.trim())
                .map_err(|e| anyhow::anyhow!("--token / AAC_MANAGER_TOKEN: {e}"))?;
        }
        if tokens.is_empty() {
            bail!("give --token, AAC_MANAGER_TOKEN or --token-file");
        }
        Ok(tokens)
    }

    /// Re-reads the token file on each SIGHUP; a file that cannot be used keeps the tokens
    /// in force and logs why (its line, never a token).
    pub fn reload_on_sighup(self, manager: Manager) -> Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(file) = &self.file else {
                    tracing::warn!("SIGHUP: no --token-file to re-read; tokens unchanged");
                    continue;
                };
                match self.read() {
                    Ok(tokens) => {
                        let summary = summary(&tokens);
                        match manager.replace_tokens(tokens) {
                            Ok(()) => tracing::info!(
                                file = %file.display(),
                                tokens = %summary,
                                "token file re-read; its tokens are in force"
                            ),
                            Err(err) => tracing::error!(error = %err, "tokens unchanged"),
                        }
                    }
                    Err(err) => tracing::error!(
                        error = %format!("{err:#}"),
                        "token file not re-read; the tokens in force stay"
                    ),
                }
            }
        });
        Ok(())
    }
}

/// `2 runner, 1 client, 1 admin`: how many tokens of each role, for the log.
pub(super) fn summary(tokens: &TokenSet) -> String {
    [Role::Runner, Role::Client, Role::Admin]
        .iter()
        .map(|role| format!("{} {role}", tokens.count(*role)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The TLS configuration of `--tls-cert` and `--tls-key` (both or neither).
pub(super) fn tls_config(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<Arc<crate::manager::server::tls::ServerConfig>>> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => crate::manager::server::tls::server_config(cert, key)
            .map(Some)
            .map_err(anyhow::Error::msg),
        _ => bail!("--tls-cert and --tls-key go together (the certificate chain and its key)"),
    }
}
