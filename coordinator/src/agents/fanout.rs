//! Telling open sessions that an alias moved (by `alias set`, a stage move, or a rollout's
//! decision changing what some of its devices should run): the [`Fanout`] task writes each
//! concerned session's new desired state straight into that session's [`ControlStream`].
//!
//! Before, every session subscribed to a broadcast of alias moves and one of revocations:
//! each move woke every session at once, and each revocation woke every session to compare
//! device ids. Now a push costs no session a wake-up, and a revocation closes the one session
//! concerned ([`crate::agents::sessions::Sessions::revoke`]).
//!
//! What this did not change (measured with the fleet simulator, 10,000–50,000 devices): the
//! push's time. It is dominated by QUIC loss probes while the coordinator and the simulated
//! agents saturate the machine's cores, and the probes stayed (see the README's fleet section).
//!
//! A push that fails for any reason but a lost connection resets the control stream: the
//! agent then reconnects, and its new session pushes it what it should run, as a session
//! ending on a failed push did before.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use ferry_shared::wire::io::{FrameIoError, write_frame};
use ferry_shared::wire::{DeviceId, Follow, MAX_FRAME, ToAgent, WireError};
use ferry_shared::{AliasName, ModelName};
use quinn::SendStream;
use tokio::sync::Notify;

use crate::agents::desired::desired_state;
use crate::agents::quic::SessionError;
use crate::app::Coordinator;

/// An alias that moved.
pub type Moved = (ModelName, AliasName);

/// The QUIC stream reset code of a control stream whose push failed.
pub const PUSH_FAILED_CODE: u32 = 5;

/// A session's control stream towards its agent, shared by the session (welcome,
/// acknowledgements) and the fanout (desired states). Each frame is written whole under the
/// lock, and a desired state is computed under it too, so a state computed later is never
/// overtaken by an older one.
pub struct ControlStream {
    /// The device on the other end.
    pub id: DeviceId,
    /// The aliases it follows (fixed for the session's life).
    pub follows: Vec<Follow>,
    send: Arc<tokio::sync::Mutex<SendStream>>,
}

impl ControlStream {
    /// The control stream `send` of device `id`, following `follows`.
    pub fn new(id: DeviceId, follows: Vec<Follow>, send: SendStream) -> Self {
        ControlStream {
            id,
            follows,
            send: Arc::new(tokio::sync::Mutex::new(send)),
        }
    }

    /// Writes `message` to the agent.
    pub async fn write(&self, message: &ToAgent) -> Result<(), FrameIoError> {
        write_frame(&mut *self.send.lock().await, message).await
    }

    /// Pushes what the device should run now for `follow`.
    pub async fn push(&self, app: &Coordinator, follow: &Follow) -> Result<(), SessionError> {
        let mut send = self.send.lock().await;
        let desired = desired_state(app, follow, &self.id)?;
        match write_frame(&mut *send, &ToAgent::Desired(desired)).await {
            Err(FrameIoError::Wire(WireError::FrameTooLarge(bytes))) => {
                // Only a model with a great many releases (each listed in its snapshot) gets
                // here; its devices cannot be told anything until some are archived.
                tracing::error!(
                    model = %follow.model,
                    device = %self.id,
                    bytes,
                    "the desired state does not fit a frame ({MAX_FRAME} bytes): the model's snapshot lists too many releases"
                );
                Err(FrameIoError::Wire(WireError::FrameTooLarge(bytes)).into())
            }
            other => Ok(other?),
        }
    }

    /// Resets the stream ([`PUSH_FAILED_CODE`]): the agent's session ends and it reconnects,
    /// and a new session starts by pushing everything it follows. (On a lost connection this
    /// does nothing more than the loss.)
    async fn reset(&self) {
        let _ = self.send.lock().await.reset(PUSH_FAILED_CODE.into());
    }

    /// The follows among `moved`.
    fn moved<'a>(&'a self, moved: &'a [Moved]) -> impl Iterator<Item = &'a Follow> {
        self.follows.iter().filter(move |f| {
            moved
                .iter()
                .any(|(model, alias)| &f.model == model && &f.alias == alias)
        })
    }
}

/// Announcements waiting for the fanout task.
#[derive(Default)]
pub struct Fanout {
    pending: Mutex<Vec<Moved>>,
    wake: Notify,
}

impl Fanout {
    /// Queues `moved` for the open sessions that follow it (see [`run`]).
    pub fn announce(&self, moved: Moved) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if !pending.contains(&moved) {
                pending.push(moved);
            }
        }
        self.wake.notify_one();
    }

    fn take_pending(&self) -> Vec<Moved> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Pushes each announcement to the sessions it concerns, until the process ends.
/// Announcements made while a pass runs are coalesced into the next pass (the sessions pushed
/// to in this one are pushed to again: what they should run may have changed since).
pub async fn run(app: Arc<Coordinator>) {
    loop {
        app.fanout.wake.notified().await;
        let moved = app.fanout.take_pending();
        if moved.is_empty() {
            continue;
        }
        for control in app.sessions.controls() {
            for follow in control.moved(&moved) {
                let push = {
                    let (app, control, follow) = (app.clone(), control.clone(), follow.clone());
                    async move {
                        if let Err(e) = control.push(&app, &follow).await {
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
