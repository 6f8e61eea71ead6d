//! The fanout task: each alias move announced to [`crate::agents::fanout::Fanout`] is pushed to
//! the open sessions that follow it, each as the desired state computed for that device.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use ferry_shared::wire::Follow;

use crate::agents::desired::{Records, desired_state};
use crate::agents::fanout::ControlStream;
use crate::agents::session_error::SessionError;
use crate::app::Coordinator;

/// Pushes what `control`'s device should run now for `follow`, its record (when a rollout
/// may steer it) found in `records`; then its policy, when that changed.
pub(crate) async fn push(
    app: &Coordinator,
    control: &ControlStream,
    follow: &Follow,
    records: &Records,
) -> Result<(), SessionError> {
    control
        .push_with(follow, || {
            desired_state(app, follow, &control.id, records).map_err(SessionError::from)
        })
        .await?;
    control
        .push_policy(|| {
            crate::agents::desired::policy(app, &control.id, &control.follows, records)
                .map_err(SessionError::from)
        })
        .await
}

/// Pushes each announcement to the sessions it concerns, until the process ends.
/// Announcements made while a pass runs are coalesced into the next pass (the sessions pushed
/// to in this one are pushed to again: what they should run may have changed since).
pub(crate) async fn run(app: Arc<Coordinator>) {
    loop {
        app.fanout.notified().await;
        let moved = app.fanout.take_pending();
        if moved.is_empty() {
            continue;
        }
        // The devices' records, once for the pass, when a rollout may steer them.
        let ahead = {
            let (app, moved) = (app.clone(), moved.clone());
            tokio::task::spawn_blocking(move || Records::ahead(&app, &moved)).await
        };
        let records = Arc::new(match ahead {
            Ok(Ok(records)) => records,
            Ok(Err(e)) => {
                tracing::warn!("reading the devices ahead of a push: {e}");
                Records::Store
            }
            Err(e) => {
                tracing::warn!("reading the devices ahead of a push failed: {e}");
                Records::Store
            }
        });
        for control in app.sessions.controls() {
            for follow in control.moved(&moved) {
                let push = {
                    let (app, control, follow, records) = (
                        app.clone(),
                        control.clone(),
                        follow.clone(),
                        records.clone(),
                    );
                    async move {
                        if let Err(e) = push(&app, &control, &follow, &records).await {
                            tracing::warn!(device = %control.id, "push failed: {e}");
                            control.reset().await;
                        }
                    }
                };
                now_or_in_a_task(push).await;
            }
        }
    }
}

/// Runs `work` here if it completes at once (a push whose frame fits the stream's window),
/// else finishes it in a task of its own: an agent that stopped reading must not hold up the
/// rest of the fleet. Never drops `work` half done (a frame half written would break the
/// stream).
async fn now_or_in_a_task(work: impl Future<Output = ()> + Send + 'static) {
    let mut work = Box::pin(work);
    let first = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
    if first.is_pending() {
        tokio::spawn(work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::Notify;

    #[tokio::test]
    async fn work_that_must_wait_is_finished_in_a_task_not_dropped() {
        let gate = Arc::new(Notify::new());
        let done = Arc::new(AtomicBool::new(false));
        let (g, d) = (gate.clone(), done.clone());
        now_or_in_a_task(async move {
            g.notified().await;
            d.store(true, Ordering::SeqCst);
        })
        .await;
        assert!(
            !done.load(Ordering::SeqCst),
            "returned before the work could finish"
        );
        gate.notify_one();
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !done.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the work finished in its task");
    }

    #[tokio::test]
    async fn work_that_completes_at_once_runs_here() {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        now_or_in_a_task(async move { d.store(true, Ordering::SeqCst) }).await;
        assert!(done.load(Ordering::SeqCst));
    }
}
