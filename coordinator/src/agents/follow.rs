//! Changes other coordinators made, for the devices this one holds sessions with. When
//! several coordinators share one database, an alias moved through one node must reach the
//! devices connected to every other. The audit trail is the one ordered record of every
//! change, so each node follows it: it reads the entries past the last it saw, skips those it
//! appended itself, and does what the node that made the change did for its own sessions
//! (tell them an alias moved, close a revoked device's session). A commit that grows the trail
//! is announced to every node (PostgreSQL's LISTEN/NOTIFY), which wakes the follower at once;
//! without the announcement (a lost listening connection) it still reads the trail every
//! second, and the trail, not the announcement, says what changed, so nothing is missed.
//! Nothing here runs on the embedded engine, which has one coordinator.

use std::sync::Arc;
use std::time::Duration;

use ferry_shared::wire::DeviceId;
use ferry_shared::{AliasName, ModelName};
use tracing::warn;

use crate::app::Coordinator;
use crate::store::StoreError;
use crate::store::records::AuditEntry;

/// How often the trail is read when no announcement wakes the follower sooner.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Entries read per round.
const BATCH: usize = 1000;

/// Follows the audit trail until the process ends (at once returns on an embedded store).
pub async fn follow_changes(app: Arc<Coordinator>) {
    if !app.store.is_shared() {
        return;
    }
    let announced = Arc::new(tokio::sync::Notify::new());
    let wake = announced.clone();
    if let Err(e) = app.store.on_change(Box::new(move || wake.notify_one())) {
        warn!("cannot hear of other coordinators' changes as they commit: {e}");
    }
    let mut after = None;
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = announced.notified() => {}
        }
        let app = app.clone();
        let result = tokio::task::spawn_blocking(move || catch_up(&app, after)).await;
        match result {
            Ok(Ok(seen)) => after = Some(seen),
            Ok(Err(e)) => warn!("following other coordinators' changes failed: {e}"),
            Err(e) => warn!("following other coordinators' changes panicked: {e}"),
        }
    }
}

/// Acts on every entry past `after` (from the trail's head on a first call); the last seen.
fn catch_up(app: &Coordinator, after: Option<u64>) -> Result<u64, StoreError> {
    let Some(mut seen) = after else {
        return app.store.audit_head();
    };
    loop {
        let entries = app.store.audit(seen, BATCH)?;
        for entry in &entries {
            seen = entry.seq;
            if !app.store.take_own_append(entry.seq) {
                act_on(app, entry)?;
            }
        }
        if entries.len() < BATCH {
            return Ok(seen);
        }
    }
}

/// Does for this node's sessions what the node that appended `entry` did for its own.
fn act_on(app: &Coordinator, entry: &AuditEntry) -> Result<(), StoreError> {
    match entry.action.as_str() {
        "alias.set" => {
            if let Some((model, alias)) = entry.subject.split_once('@')
                && let (Ok(model), Ok(alias)) =
                    (model.parse::<ModelName>(), alias.parse::<AliasName>())
            {
                app.announce(&model, &alias);
            }
        }
        // A new envelope (a new expiry or signer) for every device told to run the release.
        "resign" => {
            if let Some(model) = subject_model(&entry.subject) {
                for (model, alias, _) in app.store.aliases(Some(&model))? {
                    app.announce(&model, &alias);
                }
            }
        }
        action if action.starts_with("rollout.") => {
            if let Some(rollout) = app.store.rollout(&entry.subject)? {
                app.announce(&rollout.plan.model, &rollout.alias);
            }
        }
        // A device pinned or unpinned elsewhere: what it should run changed.
        "device.pin" | "device.unpin" => {
            if let Some(id) = DeviceId::parse(&entry.subject)
                && let Some(record) = app.store.device(&id)?
            {
                for follow in &record.follows {
                    app.tell_followers(&follow.model, &follow.alias);
                }
            }
        }
        "device.revoke" => {
            if let Some(id) = DeviceId::parse(&entry.subject) {
                app.sessions.revoke(&id);
            }
        }
        // New trust metadata travels with every desired state.
        "trust.root" => app.desired.invalidate(),
        _ => {}
    }
    Ok(())
}

/// The model of a `MODEL VERSION` subject.
fn subject_model(subject: &str) -> Option<ModelName> {
    subject.split_once(' ')?.0.parse().ok()
}
