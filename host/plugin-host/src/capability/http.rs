//! `wasi:http/outgoing-handler` for plugins granted HTTP hosts: every request goes through an
//! allowlist check (the effective capability set) before anything is sent. A refused request fails
//! with `HTTP-request-denied` in the plugin and is recorded, so the host's error can name the host.

use std::sync::{Arc, Mutex};

use tracing::warn;
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use super::declared::Capabilities;
use crate::state::{SessionState, WorldState};

/// The HTTP side of a Store: the wasi:http context and the allowlist hook.
pub struct HttpCapability {
    ctx: WasiHttpCtx,
    hooks: AllowlistHooks,
}

impl HttpCapability {
    /// Nothing allowed: every request is refused.
    pub fn deny_all(plugin: String) -> Self {
        Self::new(plugin, Capabilities::default())
    }

    pub fn new(plugin: String, effective: Capabilities) -> Self {
        Self {
            ctx: WasiHttpCtx::new(),
            hooks: AllowlistHooks {
                plugin,
                allowed: effective,
                refused: Arc::default(),
            },
        }
    }

    /// Hosts refused so far (`host:port`), for the error the host reports.
    pub fn refused(&self) -> Vec<String> {
        self.hooks
            .refused
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn allowed(&self) -> &[String] {
        &self.hooks.allowed.http
    }
}

struct AllowlistHooks {
    plugin: String,
    allowed: Capabilities,
    refused: Arc<Mutex<Vec<String>>>,
}

impl WasiHttpHooks for AllowlistHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_string();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.allowed.allows_http(&host, port) {
            let authority = format!("{host}:{port}");
            warn!(
                plugin = %self.plugin,
                host = %authority,
                allowed = ?self.allowed.http,
                "plugin HTTP request refused: host not in the effective allowlist"
            );
            if let Ok(mut refused) = self.refused.lock() {
                refused.push(authority);
            }
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let default: &mut dyn WasiHttpHooks = Default::default();
        default.send_request(request, options, fut)
    }
}

impl<W: WorldState> WasiHttpView for SessionState<W> {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: &mut self.http.hooks,
        }
    }
}
