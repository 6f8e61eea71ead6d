//! Telling open sessions that an alias moved (by `alias set`, a stage move, or a rollout's
//! decision changing what some of its devices should run): the [`Fanout`] task writes each
//! concerned session's new desired state straight into that session's [`ControlStream`]
//! ([`crate::agents::push`] runs the task; this holds the queue and the streams).
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

use std::sync::{Arc, Mutex};

use ferry_shared::wire::io::{FrameIoError, write_frame};
use ferry_shared::wire::{
    CONDITIONS_SINCE, DesiredState, DeviceId, Follow, MAX_FRAME, Policy, ToAgent, WireError,
};
use ferry_shared::{AliasName, ModelName};
use quinn::SendStream;
use tokio::sync::Notify;

/// An alias that moved.
pub(crate) type Moved = (ModelName, AliasName);

/// The QUIC stream reset code of a control stream whose push failed.
pub(crate) const PUSH_FAILED_CODE: u32 = 5;

/// A session's control stream towards its agent, shared by the session (welcome,
/// acknowledgements) and the fanout (desired states). Each frame is written whole under the
/// lock, and a desired state is computed under it too, so a state computed later is never
/// overtaken by an older one.
pub struct ControlStream {
    /// The device on the other end.
    pub id: DeviceId,
    /// The aliases it follows (fixed for the session's life).
    pub follows: Vec<Follow>,
    /// The protocol version the agent speaks.
    pub protocol: u16,
    send: Arc<tokio::sync::Mutex<SendStream>>,
    /// The policy last sent on this session (protocol 7).
    policy: std::sync::Mutex<Option<Policy>>,
}

impl ControlStream {
    /// The control stream `send` of device `id`, following `follows`, speaking `protocol`.
    pub fn new(id: DeviceId, follows: Vec<Follow>, send: SendStream, protocol: u16) -> Self {
        ControlStream {
            id,
            follows,
            protocol,
            send: Arc::new(tokio::sync::Mutex::new(send)),
            policy: std::sync::Mutex::new(None),
        }
    }

    /// Sends the device's policy, as `policy` computes it, when it differs from what this
    /// session last sent; nothing to an agent before protocol 7.
    pub async fn push_policy<E: From<FrameIoError>>(
        &self,
        policy: impl FnOnce() -> Result<Policy, E>,
    ) -> Result<(), E> {
        if self.protocol < CONDITIONS_SINCE {
            return Ok(());
        }
        let mut send = self.send.lock().await;
        let policy = policy()?;
        {
            let Ok(mut last) = self.policy.lock() else {
                return Ok(());
            };
            if last.as_ref() == Some(&policy) {
                return Ok(());
            }
            *last = Some(policy.clone());
        }
        Ok(write_frame(&mut *send, &ToAgent::Policy(policy)).await?)
    }

    /// Writes `message` to the agent.
    pub async fn write(&self, message: &ToAgent) -> Result<(), FrameIoError> {
        write_frame(&mut *self.send.lock().await, message).await
    }

    /// Pushes what the device should run now for `follow`, as `desired` computes it: under
    /// the stream's lock, so that a state computed later is never overtaken by an older one.
    pub async fn push_with<E: From<FrameIoError>>(
        &self,
        follow: &Follow,
        desired: impl FnOnce() -> Result<DesiredState, E>,
    ) -> Result<(), E> {
        let mut send = self.send.lock().await;
        let desired = desired()?;
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
    pub async fn reset(&self) {
        let _ = self.send.lock().await.reset(PUSH_FAILED_CODE.into());
    }

    /// The follows among `moved`.
    pub fn moved<'a>(&'a self, moved: &'a [Moved]) -> impl Iterator<Item = &'a Follow> {
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
    /// Queues `moved` for the open sessions that follow it (see [`crate::agents::push::run`]).
    pub fn announce(&self, moved: Moved) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if !pending.contains(&moved) {
                pending.push(moved);
            }
        }
        self.wake.notify_one();
    }

    /// Waits for the next announcement.
    pub async fn notified(&self) {
        self.wake.notified().await;
    }

    /// Every announcement made since the last call.
    pub fn take_pending(&self) -> Vec<Moved> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
