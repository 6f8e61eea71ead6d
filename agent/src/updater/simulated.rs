//! A device's disk as the update machine meets it, simulated for tests: the two links, the
//! installed versions, and the slots an unconfirmed switch would return to. Each effect the
//! machine asks for is carried out with the outcome the test picks, and answered with the
//! event the real daemon would feed back.

use std::collections::BTreeSet;

use ferry_shared::wire::{ErrorKind, InstallError};
use ferry_shared::{Accelerator, Digest, Target, Variant, Version};

use super::{Admitted, Effect, Event, Retry, Slots};

/// How the simulated device carries out an effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// As asked.
    Succeeds,
    /// A failure trying again cannot fix (a health check fails whatever its outcome says).
    FailsForGood,
    /// A failure a later attempt may not meet.
    FailsForNow,
    /// The attempt could not start: no connection.
    FailsOffline,
}

/// A release of `version` as the device admits it (the signature checks are admission's,
/// tested apart).
pub fn admitted(version: &Version) -> Admitted {
    Admitted {
        version: version.clone(),
        variant: Variant {
            target: Target::Any,
            accelerator: Accelerator::Any,
            file_name: "model.bin".parse().expect("a valid file name"),
            size: 1,
            hash: Digest::of(version.to_string().as_bytes()),
            chunks: Digest::of(b"index"),
            kind: Default::default(),
            requires: Vec::new(),
        },
        envelope: Vec::new(),
    }
}

/// A simulated failure of `version`.
pub fn failure(version: &Version, kind: ErrorKind) -> InstallError {
    InstallError {
        version: version.clone(),
        kind,
        message: "simulated".into(),
        at: 0,
    }
}

/// The disk of one simulated device.
#[derive(Clone, Debug)]
pub struct SimulatedDevice {
    /// What the links name.
    pub slots: Slots,
    /// Every version downloaded and verified (and the one it started with).
    pub installed: BTreeSet<Version>,
    /// The slots before a switch not yet confirmed, which a rollback returns to.
    before_switch: Option<Slots>,
}

impl SimulatedDevice {
    /// A device running `version`, nothing else installed.
    pub fn running(version: Version) -> Self {
        Self {
            slots: Slots {
                current: Some(version.clone()),
                previous: None,
            },
            installed: BTreeSet::from([version]),
            before_switch: None,
        }
    }

    /// True while a switch waits for its health check's verdict.
    pub fn in_probation(&self) -> bool {
        self.before_switch.is_some()
    }

    /// Carries out `effect` as `outcome` says; the event the machine gets back, if any.
    pub fn carry(&mut self, effect: &Effect, outcome: Outcome) -> Option<Event> {
        let ok = outcome == Outcome::Succeeds;
        match effect {
            Effect::Download(t) if ok => {
                self.installed.insert(t.version.clone());
                Some(Event::Downloaded(t.version.clone()))
            }
            Effect::Download(t) => Some(Event::DownloadFailed {
                error: failure(&t.version, ErrorKind::Download),
                retry: match outcome {
                    Outcome::FailsForGood => Retry::Never,
                    Outcome::FailsOffline => Retry::Offline,
                    _ => Retry::Later,
                },
            }),
            Effect::Switch(v) if ok && self.installed.contains(v) => {
                self.before_switch = Some(self.slots.clone());
                self.slots = Slots {
                    current: Some(v.clone()),
                    previous: self.slots.current.clone(),
                };
                Some(Event::Switched(self.slots.clone()))
            }
            Effect::Switch(v) => Some(Event::SwitchFailed(failure(v, ErrorKind::Disk))),
            Effect::CheckHealth(_) if ok => Some(Event::HealthPassed),
            Effect::CheckHealth(v) => Some(Event::HealthFailed(failure(v, ErrorKind::HealthCheck))),
            Effect::RollBack => {
                if let Some(before) = self.before_switch.take() {
                    self.slots = before;
                }
                Some(Event::RolledBack(self.slots.clone()))
            }
            Effect::Commit => {
                self.before_switch = None;
                None
            }
            Effect::SetCandidate(v) => Some(Event::CandidateSet(Ok(v.clone()))),
            Effect::RetryAfter(_) => Some(Event::RetryDue),
            Effect::Emit(_) => None,
        }
    }
}
