//! The daemon's gate on switches: each model's update windows and its application's lock
//! ([`crate::maintenance`]), the operator's overrides, and the update sets the model belongs
//! to ([`crate::updater::update_set`]), fed to the updaters as [`Event::Gate`]; and the
//! sets' commits and rollbacks.

use ferry_shared::ModelName;
use ferry_shared::wire::{DeferReason, Deferral, UpdatePhase};
use tracing::{info, warn};

use super::{Daemon, FollowerId};
use crate::unix_now;
use crate::updater::Event;
use crate::updater::update_set::{Member, SetAction, SetMode, Stage, judge};

/// One update set, by follower.
pub(super) struct Set {
    pub(super) mode: SetMode,
    pub(super) members: Vec<FollowerId>,
}

/// Most rounds of one check: each round may switch, commit or roll back members, which moves
/// their sets on (an ordered set of N members needs at most a few rounds per event).
const MAX_ROUNDS: usize = 16;

/// Whether a follower may switch (`None`), else why not; and whether downloads wait too.
type Gate = (Option<DeferReason>, bool);

impl Daemon {
    /// Feeds the updaters the gate when it changed, carries out what their update sets call
    /// for, and tells the session which switches wait and why.
    pub(super) fn check_gate(&mut self) {
        for _ in 0..MAX_ROUNDS {
            if !self.gate_round() {
                break;
            }
        }
        let deferred: Vec<Deferral> = self
            .followers
            .iter()
            .filter_map(|f| {
                let (version, reason, since) = f.updater.deferral()?;
                Some(Deferral {
                    model: f.updater.report().model,
                    version,
                    reason,
                    since,
                })
            })
            .collect();
        let changed = match self.deferred.lock() {
            Ok(mut held) if *held != deferred => {
                held.clone_from(&deferred);
                true
            }
            _ => false,
        };
        if changed {
            // The report is the same; the session sends the conditions with the next one.
            self.reports.send_modify(|_| {});
            let models: Vec<_> = self.followers.iter().map(|f| f.model.clone()).collect();
            self.persist(|s| {
                for model in &models {
                    s.model(model).deferred = deferred.iter().find(|d| &d.model == model).cloned();
                }
            });
        }
    }

    /// One round: the gate each follower should have now, fed where it changed, then the
    /// sets' commits and rollbacks. True when anything was fed.
    fn gate_round(&mut self) -> bool {
        let mut wanted = self.own_gates();
        let mut actions = Vec::new();
        for (i, set) in self.sets.iter().enumerate() {
            let members: Vec<Member> = set
                .members
                .iter()
                .map(|&f| Member {
                    model: self.model(f).clone(),
                    stage: self.updater(f).set_stage(),
                    may_switch: wanted[f].0.is_none(),
                })
                .collect();
            let verdict = judge(set.mode, &members);
            for (&f, waits_for) in set.members.iter().zip(verdict.waits_for) {
                if let (None, Some(waiting_for)) = (&wanted[f].0, waits_for) {
                    wanted[f].0 = Some(DeferReason::UpdateSet { waiting_for });
                }
            }
            actions.extend(verdict.action.map(|a| (i, a)));
        }
        let mut fed = false;
        let now = unix_now();
        for (follower, wanted) in wanted.into_iter().enumerate() {
            if wanted == self.gates[follower] {
                continue;
            }
            match &wanted.0 {
                Some(reason) => info!(model = %self.model(follower), "switches wait: {reason:?}"),
                None if self.gates[follower].0.is_some() => {
                    info!(model = %self.model(follower), "switches may go ahead");
                }
                None => {}
            }
            self.gates[follower] = wanted.clone();
            self.feed(
                follower,
                Event::Gate {
                    closed: wanted.0,
                    downloads_wait: wanted.1,
                    now,
                },
            );
            fed = true;
        }
        for (set, action) in actions {
            let members = self.sets[set].members.clone();
            let why = match &action {
                SetAction::Abort { cause } => self.why_held(cause),
                SetAction::Commit => String::new(),
            };
            for f in members {
                match (&action, self.updater(f).set_stage()) {
                    (SetAction::Commit, Stage::Passed) => {
                        info!(model = %self.model(f), "every model of its update set passed: confirming");
                        self.feed(f, Event::SetCommitted);
                    }
                    (SetAction::Abort { .. }, Stage::Switching | Stage::Passed) => {
                        let version = match self.updater(f).report().phase {
                            UpdatePhase::Probation(v) => Some(v),
                            _ => None,
                        };
                        warn!(model = %self.model(f), "rolling back with its update set: {why}");
                        self.feed(f, Event::SetAborted);
                        if let Some(version) = version {
                            let outcome = format!("rolled back with its update set: {why}");
                            self.record_update(f, version, outcome);
                        }
                    }
                    _ => continue,
                }
                fed = true;
            }
        }
        fed
    }

    /// Why the set member `model` cannot go on, for the others' records: its hold.
    fn why_held(&self, model: &ModelName) -> String {
        let phase = self
            .followers
            .iter()
            .find(|f| &f.model == model)
            .map(|f| f.updater.report().phase);
        match phase {
            Some(UpdatePhase::Held { version, reason }) => format!("{model} {version}: {reason}"),
            _ => format!("{model} cannot go on"),
        }
    }

    /// Each follower's own gate: its windows and the application's lock, unless an operator
    /// let its target go ahead at once (`rollout create --now`).
    fn own_gates(&self) -> Vec<Gate> {
        let gate = self.config.maintenance.gate(
            &self.policy.windows,
            &self.app_lock,
            unix_now(),
            crate::localtime::week_minute_now(),
        );
        (0..self.followers.len())
            .map(|follower| {
                let overridden = self.updater(follower).target_version().is_some_and(|v| {
                    self.policy
                        .now
                        .iter()
                        .any(|(m, version)| m == self.model(follower) && version == v)
                });
                if overridden {
                    (None, false)
                } else {
                    gate.clone()
                }
            })
            .collect()
    }
}
