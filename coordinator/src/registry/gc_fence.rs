//! The garbage-collection fence across coordinators sharing one database (see
//! [`crate::store::fences`]): a collection holds it alone; uploads, publishes and backups hold
//! it shared, so no node deletes a chunk or drops an artifact another node is taking up
//! meanwhile. Beside [`Coordinator::gc_lock`], which does the same between this node's own
//! tasks; on the embedded engine (one coordinator) the fence is not needed and not taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::app::Coordinator;
use crate::registry::error::RegistryError;
use crate::store::fences::Hold;

/// The fence's name.
pub(crate) const GC_FENCE: &str = "garbage-collection";

/// How long a hold lives unless renewed; it is renewed every third of that.
const HOLD_MS: u64 = 30_000;

/// A hold on the fence, renewed while it lives, left when dropped.
pub(crate) struct FenceHold {
    app: Arc<Coordinator>,
    holder: String,
    renew: tokio::task::JoinHandle<()>,
}

/// Takes the fence, alone when `exclusive`, for `what` (named to whoever it keeps out);
/// `None` on an embedded store. Refused as [`RegistryError::Busy`] while a hold that
/// conflicts lives on any node.
pub(crate) async fn hold(
    app: &Arc<Coordinator>,
    exclusive: bool,
    what: String,
) -> Result<Option<FenceHold>, RegistryError> {
    if !app.store.is_shared() {
        return Ok(None);
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let holder = format!("{}#{}", app.node, NEXT.fetch_add(1, Ordering::Relaxed));
    let hold = Hold {
        exclusive,
        what: format!("{what} on {}", app.node),
        expires_at_ms: 0,
    };
    let entered = enter(app.clone(), holder.clone(), hold.clone()).await?;
    if let Err(held) = entered {
        return Err(RegistryError::Busy(format!(
            "{} waits: {held} holds the garbage-collection fence; try again shortly",
            hold.what
        )));
    }
    let renew = tokio::spawn({
        let (app, holder) = (app.clone(), holder.clone());
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(HOLD_MS / 3));
            every.tick().await;
            loop {
                every.tick().await;
                match enter(app.clone(), holder.clone(), hold.clone()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(held)) => tracing::warn!("a fence hold was lost to {held}"),
                    Err(e) => tracing::warn!("cannot renew a fence hold: {e}"),
                }
            }
        }
    });
    Ok(Some(FenceHold {
        app: app.clone(),
        holder,
        renew,
    }))
}

/// Enters (or renews) `holder`'s hold on a blocking thread.
async fn enter(
    app: Arc<Coordinator>,
    holder: String,
    mut hold: Hold,
) -> Result<Result<(), String>, RegistryError> {
    tokio::task::spawn_blocking(move || {
        let now = crate::unix_now_ms();
        hold.expires_at_ms = now + HOLD_MS;
        app.store.enter_fence(GC_FENCE, &holder, &hold, now)
    })
    .await
    .map_err(|e| RegistryError::Invalid(e.to_string()))?
    .map_err(RegistryError::from)
}

impl Drop for FenceHold {
    fn drop(&mut self) {
        self.renew.abort();
        let (app, holder) = (self.app.clone(), std::mem::take(&mut self.holder));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || {
                if let Err(e) = app.store.leave_fence(GC_FENCE, &holder) {
                    tracing::warn!("cannot leave the garbage-collection fence (it lapses): {e}");
                }
            });
        }
    }
}
