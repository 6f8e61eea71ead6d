//! The update state machine of one model on one device. Pure: no I/O, no clock reads, no
//! randomness. The daemon feeds it [`Event`]s (what the coordinator wants, what its actions
//! achieved) and carries out the [`Action`]s it returns.
//!
//! ```text
//!  Idle ──desired≠current──▶ Staging ──staged──▶ Switching ──switched──▶ Probation
//!   ▲  ◀──retry due── Waiting ◀──stage failed (retryable)                 │     │
//!   │                                                                passed   failed
//!   ├──────────────────────── commit ◀────────────────────────────────────┘     │
//!   └──── hold the version ◀── rolled back ◀── RollingBack ◀────────────────────┘
//! ```
//!
//! Beside what runs, the coordinator may name a *candidate* (a shadow rollout wave): once
//! the desired version runs, the machine stages the candidate and points the `candidate` link
//! at it without switching, so the application can run it on the same inputs; when the
//! coordinator stops naming it, the link and the version go. A candidate that later becomes
//! the desired version is switched to without downloading it again.
//!
//! A version that failed its health check, whose release is unusable here, or that an
//! operator rolled back from on the device is *held*: not installed again until the
//! coordinator asks for a different version. A device may hold several versions at once (a
//! health-check failure and an operator's rollback are independent decisions). Holds are what
//! stop a fleet from looping install → fail → install.

use ferry_shared::select::{DeviceProfile, select_variant};
use ferry_shared::sign::{Keyring, SignedRelease};
use ferry_shared::trust::{TrustError, TrustState, check_release_fresh};
use ferry_shared::wire::{
    DesiredRelease, DesiredState, ErrorKind, EventKind, InstallError, ModelReport, Phase,
};
use ferry_shared::{ModelName, Variant, Version};

use crate::slots::Slots;
use crate::state::Hold;

/// What a download attempt that could not start fails with: no session to the coordinator.
pub const NOT_CONNECTED: &str = "not connected to the coordinator";

/// A verified release the device should run, with the variant chosen for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Version.
    pub version: Version,
    /// The variant for this device.
    pub variant: Variant,
    /// The signed envelope, verbatim (stored beside the artifact).
    pub envelope: Vec<u8>,
}

/// What the coordinator asked for, after checking it on the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Desire {
    /// Run this.
    Run(Target),
    /// The alias is unset: keep what runs.
    Nothing,
    /// The coordinator asked for a version this device must refuse.
    Unusable(InstallError),
}

/// What a device checks releases against.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Publisher keys from its configuration.
    Keys(Keyring),
    /// TUF-grade metadata: a root chain walked from the configured root, and the newest
    /// snapshot accepted (see [`ferry_shared::trust`]).
    Metadata(TrustState),
}

/// Checks a desired state against the device's trust and hardware: what to run, and the
/// candidate to stage beside it. Pure; with metadata, `trust` moves forward only when the
/// coordinator's roots and snapshot verify (the caller persists it).
pub fn admit(
    desired: &DesiredState,
    model: &ModelName,
    trust: &mut Trust,
    device: &DeviceProfile,
    now: u64,
) -> (Desire, Desire) {
    let refuse_all = |message: String| {
        let refuse = |wanted: &Option<DesiredRelease>| match wanted {
            None => Desire::Nothing,
            Some(w) => Desire::Unusable(InstallError {
                version: w.version.clone(),
                kind: ErrorKind::Signature,
                message: message.clone(),
                at: now,
            }),
        };
        (refuse(&desired.release), refuse(&desired.candidate))
    };
    let snapshot = match trust {
        Trust::Keys(_) => None,
        Trust::Metadata(state) => match advance(state, desired, now) {
            Ok(snapshot) => Some(snapshot),
            Err(message) => return refuse_all(message),
        },
    };
    let mut check = |wanted: &Option<DesiredRelease>| {
        let Some(wanted) = wanted else {
            return Desire::Nothing;
        };
        let verified = match (&mut *trust, &snapshot) {
            (Trust::Metadata(state), Some(snapshot)) => state
                .check_release(snapshot, model, &wanted.version, &wanted.envelope, now)
                .map_err(|e| e.to_string()),
            (Trust::Keys(keys), _) => SignedRelease::verify(&wanted.envelope, keys)
                .map_err(|e| e.to_string())
                .and_then(|signed| {
                    check_release_fresh(&signed.release, now)
                        .map(|()| signed)
                        .map_err(|e| e.to_string())
                }),
            (Trust::Metadata(_), None) => Err("no snapshot".to_owned()),
        };
        admit_release(wanted, verified, model, device, now)
    };
    let run = check(&desired.release);
    (run, check(&desired.candidate))
}

/// Walks `state` through the coordinator's roots and onto its snapshot, all or nothing.
fn advance(
    state: &mut TrustState,
    desired: &DesiredState,
    now: u64,
) -> Result<ferry_shared::trust::Snapshot, String> {
    let bundle = desired
        .trust
        .as_ref()
        .ok_or("the coordinator sent no trust metadata, and this device requires it")?;
    let mut next = state.clone();
    for root in &bundle.roots {
        match next.update_root(root) {
            Ok(()) => {}
            // Roots this device already walked past.
            Err(TrustError::Rollback { got, trusted, .. }) if got <= trusted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let snapshot = next
        .update_snapshot(&bundle.snapshot, now)
        .map_err(|e| e.to_string())?;
    *state = next;
    Ok(snapshot)
}

fn admit_release(
    wanted: &DesiredRelease,
    verified: Result<SignedRelease, String>,
    model: &ModelName,
    device: &DeviceProfile,
    now: u64,
) -> Desire {
    let refuse = |kind, message: String| {
        Desire::Unusable(InstallError {
            version: wanted.version.clone(),
            kind,
            message,
            at: now,
        })
    };
    let signed = match verified {
        Ok(signed) => signed,
        Err(e) => return refuse(ErrorKind::Signature, e),
    };
    let release = &signed.release;
    if &release.name != model || release.version != wanted.version {
        return refuse(
            ErrorKind::Signature,
            format!(
                "announced {model} {} but the signed manifest is {} {}",
                wanted.version, release.name, release.version
            ),
        );
    }
    match select_variant(release, device) {
        Some(variant) => Desire::Run(Target {
            version: release.version.clone(),
            variant: variant.clone(),
            envelope: signed.envelope_bytes,
        }),
        None => refuse(
            ErrorKind::IncompatibleHardware,
            format!(
                "no variant for {} with accelerator {} (release offers: {})",
                device.target,
                device.accelerator,
                release
                    .variants
                    .iter()
                    .map(|v| format!("{}/{}", v.target, v.accelerator))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

/// Inputs to the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The coordinator's wish, admitted.
    Desired(Desire),
    /// The candidate the coordinator wants staged beside it, admitted (`Nothing`: none).
    Candidate(Desire),
    /// The `candidate` link names this version now (or none); or pointing it at a version
    /// failed, and the version is held.
    CandidateSet(Result<Option<Version>, InstallError>),
    /// The version is complete and verified on disk.
    Staged(Version),
    /// Download, verification or writing failed; the device is unchanged.
    StageFailed {
        /// The failure.
        error: InstallError,
        /// Whether trying again may help.
        retry: Retry,
    },
    /// `current` now names the version (in probation).
    Switched(Slots),
    /// The switch failed; the slots are unchanged.
    SwitchFailed(InstallError),
    /// The health check passed.
    HealthPassed,
    /// The health check failed or timed out.
    HealthFailed(InstallError),
    /// The probation was undone; these are the slots now.
    RolledBack(Slots),
    /// A backoff delay ended.
    RetryDue,
    /// Someone else changed the slots (an operator's local rollback), with the holds that
    /// came with it.
    SlotsChanged {
        /// Slots now.
        slots: Slots,
        /// Holds now.
        holds: Vec<Hold>,
    },
}

/// Whether a failed stage is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// No: the version is held until the coordinator names another.
    Never,
    /// After a backoff.
    Later,
    /// After a backoff; the attempt could not even start, for want of a connection, so it
    /// says nothing new about the version (the failure that began the streak stays the one
    /// reported).
    Offline,
}

/// What the daemon must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Download, verify and promote the target into the installed versions.
    Stage(Target),
    /// Make the version current, journaled for probation.
    Switch(Version),
    /// Run the health check on the current version.
    CheckHealth(Version),
    /// Undo the probation.
    RollBack,
    /// Confirm the probation; remove what no slot names.
    Commit,
    /// Point the `candidate` link at this installed version, or remove it, then remove the
    /// versions no link names; feed back `CandidateSet`.
    SetCandidate(Option<Version>),
    /// Feed `RetryDue` after a backoff for this attempt number.
    RetryAfter(u32),
    /// Record and report an event.
    Emit(EventKind),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Work {
    Idle,
    Staging(Version),
    Switching(Version),
    Probation {
        version: Version,
        from: Option<Version>,
    },
    RollingBack {
        version: Version,
        error: InstallError,
    },
    Waiting(Version),
}

/// The machine for one model.
#[derive(Clone, Debug)]
pub struct Updater {
    model: ModelName,
    slots: Slots,
    /// What the `candidate` link names.
    candidate: Option<Version>,
    desire: Option<Desire>,
    candidate_desire: Desire,
    work: Work,
    holds: Vec<Hold>,
    last_error: Option<InstallError>,
    attempts: u32,
}

impl Updater {
    /// A machine starting from what is on disk and remembered.
    pub fn new(
        model: ModelName,
        slots: Slots,
        candidate: Option<Version>,
        holds: Vec<Hold>,
        last_error: Option<InstallError>,
    ) -> Self {
        Self {
            model,
            slots,
            candidate,
            desire: None,
            candidate_desire: Desire::Nothing,
            work: Work::Idle,
            holds,
            last_error,
            attempts: 0,
        }
    }

    /// The slots as the machine knows them.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// The version the `candidate` link names.
    pub fn candidate(&self) -> Option<&Version> {
        self.candidate.as_ref()
    }

    /// The versions held back.
    pub fn holds(&self) -> &[Hold] {
        &self.holds
    }

    fn held(&self, version: &Version) -> Option<&Hold> {
        self.holds.iter().find(|h| &h.version == version)
    }

    fn add_hold(&mut self, version: &Version, reason: String) {
        self.holds.retain(|h| &h.version != version);
        self.holds.push(Hold {
            version: version.clone(),
            reason,
        });
    }

    /// The last failure.
    pub fn last_error(&self) -> Option<&InstallError> {
        self.last_error.as_ref()
    }

    /// The version being downloaded or waiting to be retried: its staging directory is the
    /// one to keep.
    pub fn downloading(&self) -> Option<&Version> {
        match &self.work {
            Work::Staging(v) | Work::Waiting(v) => Some(v),
            _ => None,
        }
    }

    /// True when no install is under way (the slots may be changed from outside).
    pub fn is_settled(&self) -> bool {
        matches!(self.work, Work::Idle | Work::Waiting(_))
    }

    /// Feeds one event; returns what to do, in order.
    pub fn step(&mut self, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Desired(desire) => {
                actions.extend(self.admitted(&desire, &self.candidate_desire.clone()));
                self.desire = Some(desire);
            }
            Event::Candidate(desire) => {
                let run = self.desire.clone().unwrap_or(Desire::Nothing);
                actions.extend(self.admitted(&run, &desire));
                self.candidate_desire = desire;
            }
            Event::CandidateSet(result) => match result {
                Ok(candidate) => self.candidate = candidate,
                Err(error) => {
                    let reason = format!("{}: {}", error.kind, error.message);
                    self.add_hold(&error.version, reason);
                    actions.extend(self.failed(error, false));
                }
            },
            Event::Staged(version) => {
                if self.work == Work::Staging(version.clone()) {
                    if self.target().is_some_and(|t| t.version == version) {
                        self.work = Work::Switching(version.clone());
                        return vec![Action::Switch(version)];
                    }
                    self.work = Work::Idle;
                    if self.wanted_candidate() == Some(&version) {
                        return vec![Action::SetCandidate(Some(version))];
                    }
                    // Nobody wants it any more: start what is wanted, or else tidy it away
                    // (re-setting the link as it is removes what no link names).
                    let next = self.next();
                    if next.is_empty() {
                        return vec![Action::SetCandidate(self.candidate.clone())];
                    }
                    return next;
                }
            }
            Event::StageFailed { error, retry } => {
                if let Work::Staging(version) = &self.work {
                    let version = version.clone();
                    actions.extend(self.failed(error.clone(), retry == Retry::Offline));
                    if retry != Retry::Never {
                        self.work = Work::Waiting(version);
                        return {
                            actions.push(Action::RetryAfter(self.attempts));
                            actions
                        };
                    }
                    self.add_hold(&version, format!("{}: {}", error.kind, error.message));
                    self.work = Work::Idle;
                }
            }
            Event::Switched(slots) => {
                if let Work::Switching(version) = &self.work {
                    let version = version.clone();
                    let from = self.slots.current.clone();
                    self.slots = slots;
                    self.work = Work::Probation {
                        version: version.clone(),
                        from,
                    };
                    return vec![Action::CheckHealth(version)];
                }
            }
            Event::SwitchFailed(error) => {
                if let Work::Switching(version) = &self.work {
                    let version = version.clone();
                    actions.extend(self.failed(error, false));
                    self.work = Work::Waiting(version);
                    actions.push(Action::RetryAfter(self.attempts));
                    return actions;
                }
            }
            Event::HealthPassed => {
                if let Work::Probation { version, from } = &self.work {
                    let event = EventKind::Installed {
                        from: from.clone(),
                        to: version.clone(),
                    };
                    self.work = Work::Idle;
                    self.last_error = None;
                    self.attempts = 0;
                    let mut actions = vec![Action::Commit, Action::Emit(event)];
                    actions.extend(self.next());
                    return actions;
                }
            }
            Event::HealthFailed(error) => {
                if let Work::Probation { version, .. } = &self.work {
                    self.work = Work::RollingBack {
                        version: version.clone(),
                        error,
                    };
                    return vec![Action::RollBack];
                }
            }
            Event::RolledBack(slots) => {
                if let Work::RollingBack { version, error } = &self.work {
                    let event = EventKind::HealthRollback {
                        from: version.clone(),
                        to: slots.current.clone(),
                        error: error.clone(),
                    };
                    let version = version.clone();
                    let error = error.clone();
                    self.add_hold(
                        &version,
                        format!("health check failed: {}", first_line(&error.message)),
                    );
                    self.last_error = Some(error.clone());
                    self.slots = slots;
                    self.work = Work::Idle;
                    self.attempts = 0;
                    actions.push(Action::Emit(event));
                }
            }
            Event::RetryDue => {
                if let Work::Waiting(_) = self.work {
                    self.work = Work::Idle;
                }
            }
            Event::SlotsChanged { slots, holds } => {
                if self.is_settled() {
                    self.slots = slots;
                    self.holds = holds;
                }
            }
        }
        actions.extend(self.next());
        actions
    }

    /// Counts a failed attempt and reports it, unless it repeats the last report or could
    /// not start (`offline`) after a failure of the same version.
    fn failed(&mut self, error: InstallError, offline: bool) -> Option<Action> {
        self.attempts += 1;
        // A retry that could not start for want of a link says nothing new: the failure that
        // began the streak (a cut mid-chunk, a full disk) stays the one reported.
        let follow_on = offline
            && self
                .last_error
                .as_ref()
                .is_some_and(|e| e.version == error.version);
        if follow_on {
            return None;
        }
        let repeated = self.last_error.as_ref().is_some_and(|e| {
            e.version == error.version && e.kind == error.kind && e.message == error.message
        });
        self.last_error = Some(error.clone());
        (!repeated).then_some(Action::Emit(EventKind::InstallFailed(error)))
    }

    fn target(&self) -> Option<&Target> {
        match &self.desire {
            Some(Desire::Run(t)) => Some(t),
            _ => None,
        }
    }

    /// Takes note of a new desired version and candidate: holds on versions neither names
    /// go, a retry of a version neither names stops, and an unusable one is held and reported.
    fn admitted(&mut self, run: &Desire, candidate: &Desire) -> Vec<Action> {
        let mut actions = Vec::new();
        let (run_v, candidate_v) = (desired_version(run), desired_version(candidate));
        let wanted = |v: &Version| Some(v) == run_v || Some(v) == candidate_v;
        // A hold lasts until the coordinator asks for a different version.
        self.holds.retain(|h| wanted(&h.version));
        if let Work::Waiting(v) = &self.work
            && !wanted(v)
        {
            self.work = Work::Idle;
            self.attempts = 0;
        }
        for desire in [run, candidate] {
            if let Desire::Unusable(error) = desire {
                let new = self.held(&error.version).is_none();
                if new && self.slots.current.as_ref() != Some(&error.version) {
                    self.add_hold(&error.version, format!("{}: {}", error.kind, error.message));
                    self.last_error = Some(error.clone());
                    actions.push(Action::Emit(EventKind::InstallFailed(error.clone())));
                }
            }
        }
        actions
    }

    /// The candidate the coordinator wants staged, if it is usable here.
    fn wanted_candidate(&self) -> Option<&Version> {
        match &self.candidate_desire {
            Desire::Run(t) => Some(&t.version),
            _ => None,
        }
    }

    /// Starts work when idle: first the desired version, when it differs from what runs;
    /// then the candidate link, when it differs from what the coordinator wants staged.
    fn next(&mut self) -> Vec<Action> {
        if self.work != Work::Idle {
            return Vec::new();
        }
        if let Some(target) = self.target()
            && self.slots.current.as_ref() != Some(&target.version)
            && self.held(&target.version).is_none()
        {
            let target = target.clone();
            self.work = Work::Staging(target.version.clone());
            return vec![Action::Stage(target)];
        }
        let stage = match &self.candidate_desire {
            Desire::Run(t)
                if self.slots.current.as_ref() != Some(&t.version)
                    && self.held(&t.version).is_none() =>
            {
                Some(t)
            }
            _ => None,
        };
        match stage {
            Some(t) if self.candidate.as_ref() == Some(&t.version) => Vec::new(),
            Some(t) => {
                let t = t.clone();
                self.work = Work::Staging(t.version.clone());
                vec![Action::Stage(t)]
            }
            None if self.candidate.is_some() => vec![Action::SetCandidate(None)],
            None => Vec::new(),
        }
    }

    /// The report of this model for the coordinator.
    pub fn report(&self) -> ModelReport {
        let phase = match &self.work {
            Work::Staging(v) | Work::Switching(v) => Phase::Fetching(v.clone()),
            Work::Probation { version, .. } | Work::RollingBack { version, .. } => {
                Phase::Probation(version.clone())
            }
            Work::Waiting(v) => Phase::Retrying {
                version: v.clone(),
                attempts: self.attempts,
            },
            Work::Idle => match self.target().and_then(|t| self.held(&t.version)) {
                Some(h) => Phase::Held {
                    version: h.version.clone(),
                    reason: h.reason.clone(),
                },
                None => Phase::Idle,
            },
        };
        ModelReport {
            model: self.model.clone(),
            active: self.slots.current.clone(),
            previous: self.slots.previous.clone(),
            candidate: self.candidate.clone(),
            phase,
            last_error: self.last_error.clone(),
        }
    }
}

fn desired_version(desire: &Desire) -> Option<&Version> {
    match desire {
        Desire::Run(t) => Some(&t.version),
        Desire::Unusable(e) => Some(&e.version),
        Desire::Nothing => None,
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::manifest::{Lineage, MANIFEST_SCHEMA};
    use ferry_shared::wire::DesiredRelease;
    use ferry_shared::{Accelerator, Digest, Release, SecretKey, Target as Platform};

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn model() -> ModelName {
        "m".parse().unwrap()
    }

    fn target(version: &str) -> Target {
        Target {
            version: v(version),
            variant: Variant {
                target: Platform::Any,
                accelerator: Accelerator::Any,
                file_name: "model.bin".parse().unwrap(),
                size: 1,
                hash: Digest::of(version.as_bytes()),
                chunks: Digest::of(b"index"),
            },
            envelope: vec![],
        }
    }

    fn error(version: &str, kind: ErrorKind) -> InstallError {
        InstallError {
            version: v(version),
            kind,
            message: "boom".into(),
            at: 0,
        }
    }

    fn slots(current: &str, previous: Option<&str>) -> Slots {
        Slots {
            current: Some(v(current)),
            previous: previous.map(v),
        }
    }

    fn on_v1() -> Updater {
        Updater::new(model(), slots("1.0.0", None), None, Vec::new(), None)
    }

    /// Drives a full successful install of `version` and returns the emitted events.
    fn install(u: &mut Updater, version: &str) {
        let actions = u.step(Event::Desired(Desire::Run(target(version))));
        assert_eq!(actions, vec![Action::Stage(target(version))]);
        assert_eq!(
            u.step(Event::Staged(v(version))),
            vec![Action::Switch(v(version))]
        );
        let prev = u.slots().current.clone();
        let after = Slots {
            current: Some(v(version)),
            previous: prev,
        };
        assert_eq!(
            u.step(Event::Switched(after)),
            vec![Action::CheckHealth(v(version))]
        );
    }

    #[test]
    fn a_new_version_is_staged_switched_checked_and_committed() {
        let mut u = on_v1();
        install(&mut u, "2.0.0");
        assert_eq!(u.report().phase, Phase::Probation(v("2.0.0")));
        let actions = u.step(Event::HealthPassed);
        assert_eq!(
            actions,
            vec![
                Action::Commit,
                Action::Emit(EventKind::Installed {
                    from: Some(v("1.0.0")),
                    to: v("2.0.0")
                })
            ]
        );
        let report = u.report();
        assert_eq!(report.active, Some(v("2.0.0")));
        assert_eq!(report.previous, Some(v("1.0.0")));
        assert_eq!(report.phase, Phase::Idle);
        assert!(
            u.step(Event::Desired(Desire::Run(target("2.0.0"))))
                .is_empty(),
            "nothing to do"
        );
    }

    #[test]
    fn a_failed_health_check_rolls_back_and_holds_the_version() {
        let mut u = on_v1();
        install(&mut u, "2.0.0");
        assert_eq!(
            u.step(Event::HealthFailed(error("2.0.0", ErrorKind::HealthCheck))),
            vec![Action::RollBack]
        );
        let actions = u.step(Event::RolledBack(slots("1.0.0", None)));
        assert!(
            matches!(
                &actions[..],
                [Action::Emit(EventKind::HealthRollback { .. })]
            ),
            "{actions:?}"
        );
        assert_eq!(u.report().active, Some(v("1.0.0")));
        assert!(matches!(u.report().phase, Phase::Held { .. }));
        // The coordinator repeating its wish does not start a loop.
        assert!(
            u.step(Event::Desired(Desire::Run(target("2.0.0"))))
                .is_empty()
        );
        // A new version clears the hold.
        assert_eq!(
            u.step(Event::Desired(Desire::Run(target("2.0.1")))),
            vec![Action::Stage(target("2.0.1"))]
        );
        assert!(u.holds().is_empty());
    }

    /// Issue 14, finding 6: after a cut, every retry failed with "not connected" and that
    /// replaced the failure that began it (a cut mid-chunk) in what the fleet was shown.
    #[test]
    fn a_retry_without_a_link_does_not_hide_the_failure_that_began_the_streak() {
        let mut u = on_v1();
        u.step(Event::Desired(Desire::Run(target("2.0.0"))));
        let root = InstallError {
            message: "chunk 53: connection lost".into(),
            ..error("2.0.0", ErrorKind::Download)
        };
        u.step(Event::StageFailed {
            error: root.clone(),
            retry: Retry::Later,
        });
        u.step(Event::RetryDue);
        let offline = InstallError {
            message: NOT_CONNECTED.into(),
            ..error("2.0.0", ErrorKind::Download)
        };
        let again = u.step(Event::StageFailed {
            error: offline.clone(),
            retry: Retry::Offline,
        });
        assert_eq!(again, vec![Action::RetryAfter(2)], "nothing new to report");
        assert_eq!(u.last_error(), Some(&root));
        assert!(matches!(
            u.report().phase,
            Phase::Retrying { attempts: 2, .. }
        ));
        // With nothing before it, not being connected is the failure to report.
        let mut fresh = on_v1();
        fresh.step(Event::Desired(Desire::Run(target("2.0.0"))));
        fresh.step(Event::StageFailed {
            error: offline.clone(),
            retry: Retry::Offline,
        });
        assert_eq!(fresh.last_error(), Some(&offline));
    }

    #[test]
    fn retryable_failures_back_off_and_retry_and_report_once() {
        let mut u = on_v1();
        u.step(Event::Desired(Desire::Run(target("2.0.0"))));
        let failure = || Event::StageFailed {
            error: error("2.0.0", ErrorKind::Download),
            retry: Retry::Later,
        };
        let first = u.step(failure());
        assert!(
            matches!(
                &first[..],
                [
                    Action::Emit(EventKind::InstallFailed(_)),
                    Action::RetryAfter(1)
                ]
            ),
            "{first:?}"
        );
        assert_eq!(
            u.step(Event::RetryDue),
            vec![Action::Stage(target("2.0.0"))]
        );
        assert_eq!(
            u.step(failure()),
            vec![Action::RetryAfter(2)],
            "the same error is not re-reported"
        );
        assert!(matches!(
            u.report().phase,
            Phase::Retrying { attempts: 2, .. }
        ));
        assert_eq!(
            u.report().active,
            Some(v("1.0.0")),
            "the device stays on its version"
        );
    }

    #[test]
    fn a_permanent_failure_holds_without_retrying() {
        let mut u = on_v1();
        u.step(Event::Desired(Desire::Run(target("2.0.0"))));
        let actions = u.step(Event::StageFailed {
            error: error("2.0.0", ErrorKind::Integrity),
            retry: Retry::Never,
        });
        assert!(
            matches!(&actions[..], [Action::Emit(EventKind::InstallFailed(_))]),
            "{actions:?}"
        );
        assert!(matches!(u.report().phase, Phase::Held { .. }));
    }

    #[test]
    fn a_newer_wish_during_a_download_wins_when_it_finishes() {
        let mut u = on_v1();
        u.step(Event::Desired(Desire::Run(target("2.0.0"))));
        assert!(
            u.step(Event::Desired(Desire::Run(target("3.0.0"))))
                .is_empty(),
            "one download at a time"
        );
        assert_eq!(
            u.step(Event::Staged(v("2.0.0"))),
            vec![Action::Stage(target("3.0.0"))]
        );
    }

    #[test]
    fn an_unusable_release_is_refused_reported_and_held() {
        let mut u = on_v1();
        let actions = u.step(Event::Desired(Desire::Unusable(error(
            "2.0.0",
            ErrorKind::Signature,
        ))));
        assert!(matches!(
            &actions[..],
            [Action::Emit(EventKind::InstallFailed(_))]
        ));
        assert!(
            u.step(Event::Desired(Desire::Unusable(error(
                "2.0.0",
                ErrorKind::Signature
            ))))
            .is_empty()
        );
        assert_eq!(u.report().active, Some(v("1.0.0")));
    }

    #[test]
    fn an_operator_rollback_is_respected() {
        let mut u = on_v1();
        install(&mut u, "2.0.0");
        u.step(Event::HealthPassed);
        let holds = vec![Hold {
            version: v("2.0.0"),
            reason: "rolled back locally".into(),
        }];
        let actions = u.step(Event::SlotsChanged {
            slots: slots("1.0.0", Some("2.0.0")),
            holds,
        });
        assert!(
            actions.is_empty(),
            "the daemon must not undo an operator's rollback: {actions:?}"
        );
        assert_eq!(u.report().active, Some(v("1.0.0")));
    }

    #[test]
    fn an_operator_rollback_does_not_release_a_health_check_hold() {
        // The bug the demo found: the device failed 3.0.0's health check and held it; then an
        // operator rolled back 2.0.0 -> 1.0.0 on the device. Both holds must stand, or the
        // daemon reinstalls the known-bad 3.0.0.
        let mut u = Updater::new(
            model(),
            slots("2.0.0", Some("1.0.0")),
            None,
            Vec::new(),
            None,
        );
        install(&mut u, "3.0.0");
        u.step(Event::HealthFailed(error("3.0.0", ErrorKind::HealthCheck)));
        u.step(Event::RolledBack(slots("2.0.0", Some("1.0.0"))));
        let mut holds = u.holds().to_vec();
        holds.push(Hold {
            version: v("2.0.0"),
            reason: "rolled back locally".into(),
        });
        let actions = u.step(Event::SlotsChanged {
            slots: slots("1.0.0", Some("2.0.0")),
            holds,
        });
        assert!(actions.is_empty(), "{actions:?}");
        assert!(
            u.step(Event::Desired(Desire::Run(target("3.0.0"))))
                .is_empty()
        );
        assert!(matches!(u.report().phase, Phase::Held { .. }));
        // The 2.0.0 hold ended when the coordinator (again) asked for 3.0.0; 3.0.0's stands.
        assert_eq!(u.holds().len(), 1);
    }

    #[test]
    fn returning_to_the_previous_version_needs_no_download_decision_beyond_stage() {
        let mut u = Updater::new(
            model(),
            slots("2.0.0", Some("1.0.0")),
            None,
            Vec::new(),
            None,
        );
        // Staging an installed version is the daemon's no-op; the machine treats it uniformly.
        assert_eq!(
            u.step(Event::Desired(Desire::Run(target("1.0.0")))),
            vec![Action::Stage(target("1.0.0"))]
        );
    }

    /// On 1.0.0 (desired), with `candidate` staged beside it as the coordinator asks.
    fn shadowing(candidate: &str) -> Updater {
        let mut u = on_v1();
        assert!(
            u.step(Event::Desired(Desire::Run(target("1.0.0"))))
                .is_empty()
        );
        assert_eq!(
            u.step(Event::Candidate(Desire::Run(target(candidate)))),
            vec![Action::Stage(target(candidate))]
        );
        assert_eq!(u.report().phase, Phase::Fetching(v(candidate)));
        assert_eq!(
            u.step(Event::Staged(v(candidate))),
            vec![Action::SetCandidate(Some(v(candidate)))]
        );
        assert!(
            u.step(Event::CandidateSet(Ok(Some(v(candidate)))))
                .is_empty()
        );
        u
    }

    #[test]
    fn a_candidate_is_staged_beside_current_without_switching() {
        let u = shadowing("2.0.0");
        let report = u.report();
        assert_eq!(report.active, Some(v("1.0.0")));
        assert_eq!(report.candidate, Some(v("2.0.0")));
        assert_eq!(report.phase, Phase::Idle);
        assert_eq!(u.slots(), &slots("1.0.0", None), "nothing switched");
    }

    #[test]
    fn a_candidate_the_coordinator_drops_is_removed() {
        let mut u = shadowing("2.0.0");
        assert_eq!(
            u.step(Event::Candidate(Desire::Nothing)),
            vec![Action::SetCandidate(None)]
        );
        assert!(u.step(Event::CandidateSet(Ok(None))).is_empty());
        assert_eq!(u.report().candidate, None);
    }

    #[test]
    fn a_candidate_that_becomes_desired_is_switched_to_and_its_link_goes() {
        let mut u = shadowing("2.0.0");
        // The shadow wave gives way to a serving one: run 2.0.0, no candidate.
        assert_eq!(
            u.step(Event::Desired(Desire::Run(target("2.0.0")))),
            vec![Action::Stage(target("2.0.0"))],
            "staging an installed version is the daemon's no-op"
        );
        assert!(u.step(Event::Candidate(Desire::Nothing)).is_empty());
        assert_eq!(
            u.step(Event::Staged(v("2.0.0"))),
            vec![Action::Switch(v("2.0.0"))]
        );
        u.step(Event::Switched(slots("2.0.0", Some("1.0.0"))));
        let actions = u.step(Event::HealthPassed);
        assert_eq!(actions[0], Action::Commit);
        assert_eq!(actions.last(), Some(&Action::SetCandidate(None)));
        u.step(Event::CandidateSet(Ok(None)));
        let report = u.report();
        assert_eq!((report.active, report.candidate), (Some(v("2.0.0")), None));
    }

    #[test]
    fn the_desired_version_goes_before_the_candidate() {
        let mut u = on_v1();
        u.step(Event::Desired(Desire::Run(target("2.0.0"))));
        assert!(
            u.step(Event::Candidate(Desire::Run(target("3.0.0"))))
                .is_empty(),
            "busy installing 2.0.0"
        );
        u.step(Event::Staged(v("2.0.0")));
        u.step(Event::Switched(slots("2.0.0", Some("1.0.0"))));
        let actions = u.step(Event::HealthPassed);
        assert_eq!(actions.last(), Some(&Action::Stage(target("3.0.0"))));
    }

    #[test]
    fn an_unusable_or_failing_candidate_is_held_and_reported() {
        let mut u = on_v1();
        u.step(Event::Desired(Desire::Run(target("1.0.0"))));
        let actions = u.step(Event::Candidate(Desire::Unusable(error(
            "2.0.0",
            ErrorKind::Signature,
        ))));
        assert!(
            matches!(actions.as_slice(), [Action::Emit(EventKind::InstallFailed(e))] if e.version == v("2.0.0")),
            "{actions:?}"
        );
        assert_eq!(u.holds().len(), 1);
        // A download that keeps failing is retried while wanted, and stops when not.
        let mut u = on_v1();
        u.step(Event::Desired(Desire::Run(target("1.0.0"))));
        u.step(Event::Candidate(Desire::Run(target("2.0.0"))));
        let actions = u.step(Event::StageFailed {
            error: error("2.0.0", ErrorKind::Download),
            retry: Retry::Later,
        });
        assert_eq!(actions.last(), Some(&Action::RetryAfter(1)));
        assert!(u.step(Event::Candidate(Desire::Nothing)).is_empty());
        assert!(u.step(Event::RetryDue).is_empty(), "nothing to retry");
        // Pointing the link fails (disk): held, reported, not retried in a loop.
        let mut u = on_v1();
        u.step(Event::Desired(Desire::Run(target("1.0.0"))));
        u.step(Event::Candidate(Desire::Run(target("2.0.0"))));
        u.step(Event::Staged(v("2.0.0")));
        let actions = u.step(Event::CandidateSet(Err(error("2.0.0", ErrorKind::Disk))));
        assert!(
            matches!(
                actions.as_slice(),
                [Action::Emit(EventKind::InstallFailed(_))]
            ),
            "{actions:?}"
        );
        assert!(u.holds().iter().any(|h| h.version == v("2.0.0")));
    }

    fn signed_desired(
        key: &SecretKey,
        name: &str,
        version: &str,
        accel: Accelerator,
    ) -> DesiredState {
        expiring_desired(key, name, version, accel, 1000)
    }

    fn expiring_desired(
        key: &SecretKey,
        name: &str,
        version: &str,
        accel: Accelerator,
        expires: u64,
    ) -> DesiredState {
        let release = Release {
            schema: MANIFEST_SCHEMA,
            name: name.parse().unwrap(),
            version: v(version),
            revision: 1,
            expires,
            created_at: 0,
            created_by: "t".into(),
            variants: vec![Variant {
                target: Platform::Any,
                accelerator: accel,
                file_name: "model.bin".parse().unwrap(),
                size: 3,
                hash: Digest::of(b"abc"),
                chunks: Digest::of(b"index"),
            }],
            cpu_fallback: false,
            metadata: Lineage::default(),
        };
        let signed = SignedRelease::sign(&release, key).unwrap();
        DesiredState {
            model: model(),
            alias: "prod".parse().unwrap(),
            release: Some(DesiredRelease {
                version: v(version),
                envelope: signed.envelope_bytes,
            }),
            candidate: None,
            trust: None,
        }
    }

    #[test]
    fn admission_checks_signature_identity_and_hardware() {
        let key = SecretKey::from_seed(&[1; 32]);
        let mut trusted = Trust::Keys(Keyring::new([key.public()]));
        let cpu = DeviceProfile {
            target: "x86_64-unknown-linux-gnu".into(),
            accelerator: Accelerator::Cpu,
        };
        let ok = signed_desired(&key, "m", "2.0.0", Accelerator::Cpu);
        assert!(matches!(
            admit(&ok, &model(), &mut trusted, &cpu, 0).0,
            Desire::Run(_)
        ));

        let stranger = signed_desired(
            &SecretKey::from_seed(&[2; 32]),
            "m",
            "2.0.0",
            Accelerator::Cpu,
        );
        assert!(matches!(
            admit(&stranger, &model(), &mut trusted, &cpu, 0).0,
            Desire::Unusable(InstallError {
                kind: ErrorKind::Signature,
                ..
            })
        ));

        let other_model = signed_desired(&key, "other", "2.0.0", Accelerator::Cpu);
        assert!(matches!(
            admit(&other_model, &model(), &mut trusted, &cpu, 0).0,
            Desire::Unusable(InstallError {
                kind: ErrorKind::Signature,
                ..
            })
        ));

        let gpu_only = signed_desired(&key, "m", "2.0.0", Accelerator::Gpu);
        assert!(matches!(
            admit(&gpu_only, &model(), &mut trusted, &cpu, 0).0,
            Desire::Unusable(InstallError {
                kind: ErrorKind::IncompatibleHardware,
                ..
            })
        ));

        let mut lying = ok.clone();
        if let Some(r) = lying.release.as_mut() {
            r.version = v("9.0.0");
        }
        assert!(matches!(
            admit(&lying, &model(), &mut trusted, &cpu, 0).0,
            Desire::Unusable(_)
        ));

        // A release past its own expiry is refused, with or without root metadata.
        let stale = expiring_desired(&key, "m", "2.0.0", Accelerator::Cpu, 50);
        assert!(matches!(
            admit(&stale, &model(), &mut trusted, &cpu, 49).0,
            Desire::Run(_)
        ));
        match admit(&stale, &model(), &mut trusted, &cpu, 50).0 {
            Desire::Unusable(InstallError {
                kind: ErrorKind::Signature,
                message,
                ..
            }) => assert!(message.contains("expired"), "{message}"),
            other => panic!("an expired release was admitted: {other:?}"),
        }

        // A candidate is checked exactly like the version to run.
        let mut shadow = ok.clone();
        shadow.candidate = stranger.release.clone();
        assert!(matches!(
            admit(&shadow, &model(), &mut trusted, &cpu, 0),
            (
                Desire::Run(_),
                Desire::Unusable(InstallError {
                    kind: ErrorKind::Signature,
                    ..
                })
            )
        ));
    }
}
