//! Gives back what chunk serving keeps from one chunk to the next (suffix indexes, sketches,
//! read buffers) once no chunk has been asked for in a while: see
//! [`Transfer::trim_if_idle`](crate::agents::transfer::Transfer::trim_if_idle).

use std::sync::Arc;
use std::time::Duration;

use crate::app::Coordinator;

/// How long serving must be quiet before its caches go.
pub const QUIET: Duration = Duration::from_secs(5);

/// Runs for the coordinator's lifetime, looking twice per [`QUIET`].
pub async fn trim_when_idle(app: Arc<Coordinator>) {
    let mut tick = tokio::time::interval(QUIET / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let transfer = app.transfer.clone();
        match tokio::task::spawn_blocking(move || transfer.trim_if_idle(QUIET)).await {
            Ok(true) => tracing::debug!("chunk serving is quiet: its caches are given back"),
            Ok(false) => {}
            Err(e) => tracing::warn!("giving back the chunk caches failed: {e}"),
        }
    }
}
