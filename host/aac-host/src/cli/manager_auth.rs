//! The manager's tokens and TLS from the command line: `--token` (an admin token) and
//! `--token-file` (`role:token` lines, re-read on SIGHUP), `--tls-cert`/`--tls-key`.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

use crate::manager::server::Manager;
use crate::manager::server::tls::{TlsConfig, server_config};
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

    /// Re-reads the token file, and the TLS certificate and key when served, on each SIGHUP;
    /// a file that cannot be used keeps what is in force and logs why (its line, never a token).
    pub fn reload_on_sighup(self, manager: Manager, tls: Option<TlsFiles>) -> Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                if let Some(tls) = &tls {
                    tls.reload();
                }
                let Some(file) = &self.file else {
                    tracing::warn!(target: "manager", "SIGHUP: no --token-file to re-read; tokens unchanged");
                    continue;
                };
                match self.read() {
                    Ok(tokens) => {
                        let summary = summary(&tokens);
                        match manager.replace_tokens(tokens) {
                            Ok(()) => tracing::info!(
                                target: "manager",
                                file = %file.display(),
                                tokens = %summary,
                                "token file re-read; its tokens are in force"
                            ),
                            Err(err) => {
                                tracing::error!(target: "manager", error = %err, "tokens unchanged")
                            }
                        }
                    }
                    Err(err) => tracing::error!(
                        target: "manager",
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

/// `--tls-cert` and `--tls-key`, and the configuration made of them that is in force.
pub(super) struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    pub config: TlsConfig,
}

impl TlsFiles {
    /// Reads both again; a pair that cannot be used keeps the one in force.
    fn reload(&self) {
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                self.config.replace(config);
                tracing::info!(
                    target: "manager",
                    cert = %self.cert.display(),
                    "TLS certificate re-read; new connections get it"
                );
            }
            Err(err) => tracing::error!(
                target: "manager",
                error = %err,
                "TLS certificate not re-read; the one in force stays"
            ),
        }
    }
}

/// The TLS configuration of `--tls-cert` and `--tls-key` (both or neither).
pub(super) fn tls_config(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<TlsFiles>> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            let config = server_config(cert, key).map_err(anyhow::Error::msg)?;
            Ok(Some(TlsFiles {
                cert: cert.to_owned(),
                key: key.to_owned(),
                config: TlsConfig::new(config),
            }))
        }
        _ => bail!("--tls-cert and --tls-key go together (the certificate chain and its key)"),
    }
}
