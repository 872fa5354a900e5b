//! The one `describe()` loading path of both worlds: the call is bounded by `[limits] call_wall`,
//! a trap or an oversized string is an error naming the plugin, and the name and version it gives
//! become its identity (short and printable). Only the export called differs per world.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use wasmtime::Store;

use super::PluginIdentity;
use super::deadline::bounded;
use super::failure::described;
use super::state::{SessionState, WorldState};

/// A world's `describe` export, called on a fresh instance in `store`.
pub type DescribeCall<'a, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>;

/// Calls `describe` (`call`) in `store` and renames `identity` after what it returned; `fields`
/// are the name, version and description of the world's answer.
pub async fn describe<W: WorldState, T>(
    identity: &mut Arc<PluginIdentity>,
    mut store: Store<SessionState<W>>,
    call: impl for<'a> FnOnce(&'a mut Store<SessionState<W>>) -> DescribeCall<'a, T>,
    fields: impl Fn(&T) -> [&str; 3],
) -> anyhow::Result<T> {
    store.data_mut().start_call();
    let wall = store.data().limits.call_wall;
    let info = bounded(call(&mut store), wall, &CancellationToken::new())
        .await
        .map_err(|stopped| {
            anyhow::anyhow!(
                stopped
                    .outcome(identity, "describe", "[limits] call_wall")
                    .message
                    .unwrap_or_default()
            )
        })?;
    let info = described(store.data(), info, &fields)?;
    let [name, version, _] = fields(&info);
    let mut renamed = PluginIdentity::clone(identity);
    renamed.name = super::text::identity_part(name);
    renamed.version = super::text::identity_part(version);
    *identity = Arc::new(renamed);
    Ok(info)
}
