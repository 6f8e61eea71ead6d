//! The daemon's side of offline bundles ([`crate::bundle`]): a bundle handed over by
//! `ferry-agent install-bundle` is admitted as a desired state from the coordinator would be,
//! and its release is then installed from the file by the usual update.

use std::path::PathBuf;

use ferry_shared::wire::{DesiredState, EventKind};
use tracing::{info, warn};

use super::Daemon;
use crate::bundle::{install, request};
use crate::unix_now;
use crate::updater::{Desire, Event, admit};

impl Daemon {
    /// Takes a bundle handed over, if any, and sets its release as the model's target (as
    /// the coordinator's desired state would): the updater installs it from the bundle, then
    /// switches, checks and commits or rolls back as with any update. A bundle the device
    /// refuses (its snapshot expired by this device's clock, a signature, a root) is
    /// recorded as a failed install, reported on next contact; the version is not held, so
    /// the coordinator may still deliver it.
    pub(super) fn take_bundle(&mut self) {
        let path = match request::take(&self.config.state_dir) {
            None => return,
            Some(Ok(path)) => path,
            Some(Err(why)) => {
                warn!("an offline bundle was handed over but cannot be read: {why}");
                return;
            }
        };
        let header = match install::open(&path) {
            Ok((_, header)) => header,
            Err(why) => {
                warn!("offline bundle refused: {why}");
                return;
            }
        };
        if let Some(why) = crate::bundle::command::not_installable(&self.config, &header.model) {
            warn!(path = %path.display(), model = %header.model, "offline bundle refused: {why}");
            return;
        }
        let followed = self
            .config
            .follows()
            .into_iter()
            .find(|(m, _)| *m == header.model);
        let (Some(follower), Some((_, alias))) = (
            self.followers.iter().position(|f| f.model == header.model),
            followed,
        ) else {
            warn!(path = %path.display(), model = %header.model, "offline bundle refused: this device does not follow its model");
            return;
        };
        let desired = DesiredState {
            model: header.model.clone(),
            alias,
            release: Some(header.release),
            candidate: None,
            trust: header.trust,
        };
        let before = self.trust_state();
        let (run, _) = admit(
            &desired,
            &header.model,
            &mut self.trust,
            &self.profile,
            unix_now(),
        );
        if self.trust_state() != before {
            self.save_trust();
        }
        match run {
            Desire::Run(target) => {
                info!(model = %header.model, version = %target.version, path = %path.display(), "installing from an offline bundle");
                self.bundles
                    .insert((header.model, target.version.clone()), path);
                // A retry waiting for its backoff goes now, from the bundle.
                self.feed_all(
                    follower,
                    [Event::Desired(Desire::Run(target)), Event::RetryDue],
                );
            }
            Desire::Unusable(mut error) => {
                error.message = format!("offline bundle {}: {}", path.display(), error.message);
                warn!(model = %header.model, version = %error.version, "offline bundle refused: {}", error.message);
                let model = header.model;
                self.persist(|s| {
                    s.push_event(&model, EventKind::InstallFailed(error.clone()), unix_now());
                    s.model(&model).last_error = Some(error);
                });
                self.publish_report();
            }
            Desire::Nothing => {}
        }
    }

    /// The bundle to install `version` of the follower's model from, taken: it serves one
    /// attempt (a failure falls back to the network).
    pub(super) fn bundle_for(
        &mut self,
        model: &ferry_shared::ModelName,
        version: &ferry_shared::Version,
    ) -> Option<PathBuf> {
        self.bundles.remove(&(model.clone(), version.clone()))
    }
}
