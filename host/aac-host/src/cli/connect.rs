//! How a client or runner reaches its manager: the URL, the bearer token (`--token`,
//! `AAC_MANAGER_TOKEN` or `--token-file`) and, for an `https://` manager with a private CA,
//! `--ca-cert`.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::manager::ManagerClient;

/// The token in `file`: its one non-empty line, without the surrounding whitespace.
pub(super) fn token_from_file(file: &Path) -> Result<String> {
    use std::io::Read;
    // A token is short: a file past this is not a token file.
    const MAX_BYTES: u64 = 64 * 1024;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("could not read token file {}", file.display()))?;
    if text.len() as u64 > MAX_BYTES {
        bail!(
            "token file {} is over {MAX_BYTES} bytes: not a token",
            file.display()
        );
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    match (lines.next(), lines.next()) {
        (Some(token), None) => Ok(token.to_owned()),
        (None, _) => bail!("token file {} is empty", file.display()),
        (Some(_), Some(_)) => bail!(
            "token file {} has more than one line: a runner or client reads one token (the \
             manager's role file of `role:token` lines is for `aac-host manager`)",
            file.display()
        ),
    }
}

/// A client of the manager at `url` with `token` (else the token file, else
/// `AAC_MANAGER_TOKEN`), trusting the CA of `--ca-cert` when given.
pub(super) fn client(
    global: &super::Global,
    url: &str,
    token: Option<String>,
) -> Result<ManagerClient> {
    let token = match (token, &global.token_file) {
        (Some(token), _) => token,
        (None, Some(file)) => token_from_file(file)?,
        (None, None) => std::env::var("AAC_MANAGER_TOKEN")
            .map_err(|_| anyhow::anyhow!("give --token, AAC_MANAGER_TOKEN or --token-file"))?,
    };
    let mut client = ManagerClient::new(url, token)?;
    if let Some(ca) = &global.ca_cert {
        let pem = std::fs::read(ca)
            .with_context(|| format!("could not read the CA certificate {}", ca.display()))?;
        client = client
            .with_ca_certificate(&pem)
            .with_context(|| format!("--ca-cert {}", ca.display()))?;
    }
    Ok(client)
}
