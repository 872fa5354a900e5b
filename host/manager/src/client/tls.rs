//! HTTPS to the manager: trusting a private CA (`--ca-cert`), and telling TLS failures that
//! retrying cannot fix from those it can.

use super::{CONNECT_TIMEOUT, ClientError, ManagerClient, Result};

impl ManagerClient {
    /// Trusts the CA certificate(s) in `pem` for an `https://` manager, besides the public
    /// roots.
    pub fn with_ca_certificate(mut self, pem: &[u8]) -> Result<Self> {
        let request_error = |message: String| ClientError::Request {
            endpoint: self.base.clone(),
            message,
        };
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| request_error(format!("the CA certificate is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(request_error(
                "the CA file holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
        self.http = builder
            .build()
            .map_err(|e| request_error(format!("cannot build the HTTP client: {e}")))?;
        Ok(self)
    }
}

/// What to do about a TLS failure that retrying cannot fix, from reqwest's error chain.
pub(super) fn hint(chain: &str) -> Option<&'static str> {
    if chain.contains("invalid peer certificate") || chain.contains("certificate verify") {
        Some(
            "the manager's certificate is not trusted: give its CA with --ca-cert FILE, or check              the host name in the manager URL",
        )
    } else if chain.contains("InvalidContentType") || chain.contains("corrupt message") {
        Some("the manager does not speak TLS here: use an http:// manager URL")
    } else {
        None
    }
}
