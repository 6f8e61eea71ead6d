//! The daemon's side of the agent's own updates (see [`crate::handover`]): handing over once a
//! new agent binary is switched to, and, in that new binary, proving itself and confirming.

use ferry_shared::Version;
use ferry_shared::wire::{ErrorKind, EventKind, InstallError};
use tracing::{error, info};

use super::{Daemon, FollowerId, MAIN};
use crate::handover::{self, Trial};
use crate::{health, unix_now};

impl Daemon {
    /// The agent model's switch is done and its "health check" is the new binary's trial:
    /// writes the trial; the daemon stops once the other models are settled.
    pub(super) fn begin_handover(
        &mut self,
        follower: FollowerId,
        version: Version,
    ) -> Option<crate::updater::Event> {
        let model = self.model(follower).clone();
        let binary = self.installed(follower, &version).file;
        let binary = std::fs::canonicalize(&binary).unwrap_or(binary);
        let prove_within = self
            .config
            .self_update
            .as_ref()
            .map_or(120, |s| s.prove_within.as_secs());
        let trial = Trial {
            model,
            version: version.clone(),
            binary,
            launched: false,
            deadline: unix_now().saturating_add(prove_within),
        };
        match handover::save(&self.config.state_dir, &trial) {
            Ok(()) => {
                info!(%version, "new agent installed; handing over once the other models are settled");
                self.handover_pending = true;
                None
            }
            // Without a trial on disk the new binary cannot be started safely: undo the switch.
            Err(e) => Some(crate::updater::Event::HealthFailed(InstallError {
                version,
                kind: ErrorKind::Disk,
                message: format!("{e:#}"),
                at: unix_now(),
            })),
        }
    }

    /// Whether to stop now and let the new agent binary take over.
    pub(super) fn ready_to_hand_over(&self) -> bool {
        self.handover_pending
            && self
                .followers
                .iter()
                .enumerate()
                .all(|(i, f)| Some(i) == self.agent_follower || f.updater.is_settled())
    }

    /// On trial and connected (the coordinator took this agent's hello and report): runs the
    /// device's health check on the model it serves, whose outcome decides the trial.
    pub(super) fn prove_trial(&mut self) {
        if self.trial.is_none() || self.proving {
            return;
        }
        self.proving = true;
        let proofs = self.proofs.clone();
        let main = &self.followers[MAIN];
        let check = self.config.main().health_check.clone();
        let serving = main.updater.slots().current.clone();
        let model = main.model.clone();
        let installed = serving.as_ref().map(|v| self.installed(MAIN, v));
        tokio::spawn(async move {
            let proof = match (check, serving, installed) {
                (Some(check), Some(version), Some(installed)) => {
                    health::run(&check, &model, &version, &installed).await
                }
                // Nothing to check yet: connecting and reporting is the proof.
                _ => Ok(()),
            };
            let _ = proofs.send(proof).await;
        });
    }

    /// The new agent proved itself: its switch is confirmed and reported, the trial removed.
    pub(super) fn confirm_trial(&mut self) {
        let Some(trial) = self.trial.take() else {
            return;
        };
        let Some(follower) = self.agent_follower else {
            return;
        };
        let model = trial.model.clone();
        // The trial goes first: a crash before the commit then leaves a plain unconfirmed
        // switch, which the next start rolls back and installs again, never a trial that
        // would hold back the version that passed it.
        if let Err(e) = handover::clear(&self.config.state_dir) {
            error!("cannot end the trial, so a restart would undo this agent: {e:#}");
            return;
        }
        let slots = match self.locked(|layout| layout.commit(&model)) {
            Ok(slots) => slots,
            Err(e) => {
                // The switch stays in probation: the next start rolls it back and installs
                // this version again.
                error!(%model, "cannot confirm the new agent: {e}");
                return;
            }
        };
        info!(version = %trial.version, "this new agent proved itself; the update is confirmed");
        self.persist(|s| {
            s.push_event(
                &model,
                EventKind::Installed {
                    from: slots.previous.clone(),
                    to: trial.version.clone(),
                },
                unix_now(),
            )
        });
        self.record_update(follower, trial.version, "installed".into());
        self.publish_report();
    }
}
