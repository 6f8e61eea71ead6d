//! The task that writes what this node sent each device to the store every
//! [`FLUSH_EVERY`] (see [`crate::fleet::device_transfers`]).

use std::sync::Arc;

use tracing::warn;

use crate::app::Coordinator;
use crate::fleet::device_transfers::FLUSH_EVERY;

/// Writes the counts every [`FLUSH_EVERY`] until the process ends.
pub async fn keep_written(app: Arc<Coordinator>) {
    let mut every = tokio::time::interval(FLUSH_EVERY);
    loop {
        every.tick().await;
        let app = app.clone();
        let written = tokio::task::spawn_blocking(move || {
            app.transfers_by_device.flush(&app.store, &app.node)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("cannot store what devices were sent: {e}"),
            Err(e) => warn!("storing what devices were sent panicked: {e}"),
        }
    }
}
