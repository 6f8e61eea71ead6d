//! The desired-state caches the Coordinator holds (see [`crate::agents::desired`] for what is
//! computed into them and when they are invalidated).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_shared::wire::{DesiredRelease, DesiredState, TrustBundle};
use ferry_shared::{AliasName, ModelName, Version};

use crate::store::pins::Pins;
use crate::store::rollouts::RolloutRecord;

/// The caches (one lock: they are invalidated together).
#[derive(Default)]
pub struct DesiredCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
pub(crate) struct Inner {
    /// Bumped by every invalidation: a value computed before one is not stored after it.
    pub(crate) generation: u64,
    /// The desired state of each alias, shared by every device that follows it.
    pub(crate) by_alias: HashMap<(ModelName, AliasName), Arc<DesiredState>>,
    /// Rollouts that can steer devices, newest first (see [`crate::agents::desired`]).
    pub(crate) steering: Option<Arc<Vec<RolloutRecord>>>,
    /// The trust metadata sent with every desired state of a model, and when it was
    /// assembled.
    pub(crate) trust: HashMap<ModelName, (u64, Option<Arc<TrustBundle>>)>,
    /// The signed envelopes of the releases rollouts steer devices to (each device of a
    /// wave is told the same one).
    pub(crate) releases: HashMap<(ModelName, Version), Option<DesiredRelease>>,
    /// Devices an operator pinned: (device id, model) → version.
    pub(crate) pins: Option<Arc<Pins>>,
}

impl DesiredCache {
    /// The caches, locked.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything (an alias or a rollout changed).
    pub fn invalidate(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.by_alias.clear();
        inner.steering = None;
        inner.trust.clear();
        inner.releases.clear();
        inner.pins = None;
    }
}
