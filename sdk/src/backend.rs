//! The [`Backend`] trait and the glue behind [`export_backend!`](crate::export_backend).

use std::cell::RefCell;

use crate::bindings::backend::exports::aac::plugin::adapter::{GuestSession, Session};
use crate::{CommandInfo, PluginInfo, RunInfo, StartError, TurnResult};

/// A backend adapter: one value per run, one [`run_turn`](Backend::run_turn) call per command.
///
/// The host keeps the value alive for the whole run, so a backend can remember the agent's thread id
/// between turns in its own fields.
pub trait Backend: Sized + 'static {
    /// Opens the run's session. Keep it cheap: no process runs until the first turn. A refusal
    /// says why ([`StartError::config`] for a bad setting, …), and the run ends accordingly.
    fn start(run: RunInfo) -> Result<Self, StartError>;

    /// Runs one agent turn to its end, emitting events as it goes.
    fn run_turn(&mut self, command: CommandInfo) -> TurnResult;

    /// Called once when the run ends.
    fn close(&mut self) {}

    /// Name, version and description shown by `aac-host plugin inspect`. The default takes them
    /// from the plugin crate's `Cargo.toml`.
    fn describe(defaults: PluginInfo) -> PluginInfo {
        defaults
    }
}

/// The exported `session` resource, wrapping an author's [`Backend`].
#[doc(hidden)]
pub struct SessionExport<B>(RefCell<B>);

impl<B: Backend> GuestSession for SessionExport<B> {
    fn start(run: RunInfo) -> Result<Session, StartError> {
        B::start(run).map(|backend| Session::new(SessionExport(RefCell::new(backend))))
    }

    fn run_turn(&self, command: CommandInfo) -> TurnResult {
        let result = self.0.borrow_mut().run_turn(command);
        crate::output_gate::report_skipped();
        result
    }

    fn close(&self) {
        self.0.borrow_mut().close()
    }
}

#[doc(hidden)]
pub fn describe_with_defaults<B: Backend>(
    name: &str,
    version: &str,
    description: &str,
) -> PluginInfo {
    B::describe(PluginInfo {
        name: name.to_string(),
        version: version.to_string(),
        description: description.to_string(),
    })
}

/// Exports a [`Backend`] implementation as the plugin's `adapter`.
///
/// ```ignore
/// aac_sdk::export_backend!(MyBackend);
/// ```
#[macro_export]
macro_rules! export_backend {
    ($backend:ty) => {
        // Exports only exist in the wasm component; a native build (workspace tests, clippy) of the
        // plugin crate links without them.
        #[cfg(target_family = "wasm")]
        #[doc(hidden)]
        struct __AacBackendExport;

        #[cfg(target_family = "wasm")]
        impl $crate::__private::bindings::backend::exports::aac::plugin::adapter::Guest for __AacBackendExport {
            type Session = $crate::SessionExport<$backend>;

            fn describe() -> $crate::PluginInfo {
                $crate::__private::describe_with_defaults::<$backend>(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                )
            }
        }

        #[cfg(target_family = "wasm")]
        $crate::__private::bindings::backend::export_backend_world!(__AacBackendExport with_types_in $crate::__private::bindings::backend);

        // Natively the backend is still reachable, so its code is checked like the wasm build's.
        #[cfg(not(target_family = "wasm"))]
        const _: () = {
            let _ = <$backend as $crate::Backend>::start;
            let _ = <$backend as $crate::Backend>::run_turn;
            let _ = <$backend as $crate::Backend>::close;
            let _ = <$backend as $crate::Backend>::describe;
        };
    };
}
