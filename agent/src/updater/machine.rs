//! The machine itself: [`Updater`] takes [`Event`]s and returns [`Effect`]s, one model at a
//! time (see the diagram in [`crate::updater`]).

use ferry_shared::wire::{DeferReason, EventKind, InstallError, ModelReport, UpdatePhase};
use ferry_shared::{ModelName, Version};

use super::admission::{Admitted, Desire, desired_version};
use super::installed::{Hold, Slots};
use super::update_set::Stage;

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
    Downloaded(Version),
    /// Download, verification or writing failed; the device is unchanged.
    DownloadFailed {
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
    /// Whether the device may switch now (its update windows, its application's lock), and
    /// whether it may download while it may not; at `now` (device clock).
    Gate {
        /// `None`: switch freely; else why not now.
        closed: Option<DeferReason>,
        /// While closed, downloads wait too (the window is for downloads as well).
        downloads_wait: bool,
        /// Unix seconds, device clock (when a deferral began).
        now: u64,
    },
    /// Every member of this model's update set passed its check: confirm the switch.
    SetCommitted,
    /// Another member of this model's update set failed: undo this model's switch too (its
    /// version is not held; it switches again with the set).
    SetAborted,
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
pub enum Effect {
    /// Download, verify and promote the target into the installed versions.
    Download(Admitted),
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
    Downloading(Version),
    Switching(Version),
    Probation {
        version: Version,
        from: Option<Version>,
    },
    RollingBack {
        version: Version,
        /// Its own failure; `None`: rolled back with its update set, no hold, no report.
        error: Option<InstallError>,
    },
    /// Switched and checked; the commit waits for the rest of its update set.
    Passed {
        version: Version,
        from: Option<Version>,
    },
    Waiting(Version),
    /// Downloaded and verified; the switch waits for the gate to open.
    Deferred(Version),
}

/// Why switches (and, with `downloads_wait`, downloads) wait, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Closed {
    reason: DeferReason,
    downloads_wait: bool,
    since: u64,
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
    /// Why switches wait now (`None`: they do not).
    gate: Option<Closed>,
    /// The model is in an update set: a passed check waits for the set's commit.
    in_set: bool,
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
            gate: None,
            in_set: false,
        }
    }

    /// Makes this a model of an update set: a switch that passes its check stays in
    /// probation until [`Event::SetCommitted`] (see [`super::update_set`]).
    pub fn join_update_set(&mut self) {
        self.in_set = true;
    }

    /// Where this model stands in its update set.
    pub fn set_stage(&self) -> Stage {
        match &self.work {
            Work::Downloading(_) | Work::Waiting(_) => Stage::Preparing,
            Work::Deferred(_) => Stage::Ready,
            Work::Switching(_) | Work::Probation { .. } => Stage::Switching,
            Work::Passed { .. } => Stage::Passed,
            Work::RollingBack { .. } => Stage::RollingBack,
            Work::Idle => match self.desire.as_ref().and_then(desired_version) {
                None => Stage::Settled,
                Some(v) if self.slots.current.as_ref() == Some(v) => Stage::Settled,
                Some(v) if self.held(v).is_some() => Stage::Held,
                Some(_) => Stage::Preparing,
            },
        }
    }

    /// The switch this machine holds back and why, with when it began: a version downloaded
    /// (or, when downloads wait too, wanted) that the gate keeps from running.
    pub fn deferral(&self) -> Option<(Version, DeferReason, u64)> {
        let gate = self.gate.as_ref()?;
        let version = match &self.work {
            Work::Deferred(v) => v.clone(),
            Work::Idle if gate.downloads_wait => {
                let target = self.target()?;
                (self.slots.current.as_ref() != Some(&target.version)
                    && self.held(&target.version).is_none())
                .then(|| target.version.clone())?
            }
            _ => return None,
        };
        Some((version, gate.reason.clone(), gate.since))
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

    /// The version the coordinator wants run, when it is usable here.
    pub fn target_version(&self) -> Option<&Version> {
        self.target().map(|t| &t.version)
    }

    /// The last failure.
    pub fn last_error(&self) -> Option<&InstallError> {
        self.last_error.as_ref()
    }

    /// The version being downloaded or waiting to be retried: its staging directory is the
    /// one to keep.
    pub fn downloading(&self) -> Option<&Version> {
        match &self.work {
            Work::Downloading(v) | Work::Waiting(v) => Some(v),
            _ => None,
        }
    }

    /// True when no install is under way (the slots may be changed from outside).
    pub fn is_settled(&self) -> bool {
        matches!(self.work, Work::Idle | Work::Waiting(_) | Work::Deferred(_))
    }

    /// Feeds one event; returns what to do, in order.
    pub fn step(&mut self, event: Event) -> Vec<Effect> {
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
            Event::Downloaded(version) => {
                if self.work == Work::Downloading(version.clone()) {
                    if self.target().is_some_and(|t| t.version == version) {
                        if self.gate.is_some() {
                            // Downloaded and verified; the switch waits for the gate.
                            self.work = Work::Deferred(version);
                            return Vec::new();
                        }
                        self.work = Work::Switching(version.clone());
                        return vec![Effect::Switch(version)];
                    }
                    self.work = Work::Idle;
                    if self.wanted_candidate() == Some(&version) {
                        return vec![Effect::SetCandidate(Some(version))];
                    }
                    // Nobody wants it any more: start what is wanted, or else tidy it away
                    // (re-setting the link as it is removes what no link names).
                    let next = self.next();
                    if next.is_empty() {
                        return vec![Effect::SetCandidate(self.candidate.clone())];
                    }
                    return next;
                }
            }
            Event::DownloadFailed { error, retry } => {
                if let Work::Downloading(version) = &self.work {
                    let version = version.clone();
                    actions.extend(self.failed(error.clone(), retry == Retry::Offline));
                    if retry != Retry::Never {
                        self.work = Work::Waiting(version);
                        return {
                            actions.push(Effect::RetryAfter(self.attempts));
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
                    return vec![Effect::CheckHealth(version)];
                }
            }
            Event::SwitchFailed(error) => {
                if let Work::Switching(version) = &self.work {
                    let version = version.clone();
                    actions.extend(self.failed(error, false));
                    self.work = Work::Waiting(version);
                    actions.push(Effect::RetryAfter(self.attempts));
                    return actions;
                }
            }
            Event::HealthPassed => {
                if let Work::Probation { version, from } = &self.work {
                    if self.in_set {
                        self.work = Work::Passed {
                            version: version.clone(),
                            from: from.clone(),
                        };
                        return Vec::new();
                    }
                    return self.confirmed();
                }
            }
            Event::SetCommitted => {
                if let Work::Passed { .. } = &self.work {
                    return self.confirmed();
                }
            }
            Event::SetAborted => {
                if let Work::Probation { version, .. } | Work::Passed { version, .. } = &self.work {
                    self.work = Work::RollingBack {
                        version: version.clone(),
                        error: None,
                    };
                    return vec![Effect::RollBack];
                }
            }
            Event::HealthFailed(error) => {
                if let Work::Probation { version, .. } = &self.work {
                    self.work = Work::RollingBack {
                        version: version.clone(),
                        error: Some(error),
                    };
                    return vec![Effect::RollBack];
                }
            }
            Event::RolledBack(slots) => {
                if let Work::RollingBack { error: None, .. } = &self.work {
                    // Not this version's fault: no hold, no failure; it waits for its set.
                    self.slots = slots;
                    self.work = Work::Idle;
                    self.attempts = 0;
                } else if let Work::RollingBack {
                    version,
                    error: Some(error),
                } = &self.work
                {
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
                    actions.push(Effect::Emit(event));
                }
            }
            Event::RetryDue => {
                if let Work::Waiting(_) = self.work {
                    self.work = Work::Idle;
                }
            }
            Event::Gate {
                closed,
                downloads_wait,
                now,
            } => {
                self.gate = closed.map(|reason| Closed {
                    since: match &self.gate {
                        // Still closed for the same reason: it waits since it first did.
                        Some(old) if old.reason == reason => old.since,
                        _ => now,
                    },
                    reason,
                    downloads_wait,
                });
                if self.gate.is_none()
                    && let Work::Deferred(version) = &self.work
                {
                    let version = version.clone();
                    self.work = Work::Switching(version.clone());
                    return vec![Effect::Switch(version)];
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

    /// Confirms the switch in probation: commit, report, and go on with what is wanted next.
    fn confirmed(&mut self) -> Vec<Effect> {
        let (Work::Probation { version, from } | Work::Passed { version, from }) = &self.work
        else {
            return Vec::new();
        };
        let event = EventKind::Installed {
            from: from.clone(),
            to: version.clone(),
        };
        self.work = Work::Idle;
        self.last_error = None;
        self.attempts = 0;
        let mut actions = vec![Effect::Commit, Effect::Emit(event)];
        actions.extend(self.next());
        actions
    }

    /// Counts a failed attempt and reports it, unless it repeats the last report or could
    /// not start (`offline`) after a failure of the same version.
    fn failed(&mut self, error: InstallError, offline: bool) -> Option<Effect> {
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
        (!repeated).then_some(Effect::Emit(EventKind::InstallFailed(error)))
    }

    fn target(&self) -> Option<&Admitted> {
        match &self.desire {
            Some(Desire::Run(t)) => Some(t),
            _ => None,
        }
    }

    /// Takes note of a new desired version and candidate: holds on versions neither names
    /// go, a retry of a version neither names stops, and an unusable one is held and reported.
    fn admitted(&mut self, run: &Desire, candidate: &Desire) -> Vec<Effect> {
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
        // A deferred switch to a version no longer asked for is dropped (it stays installed
        // until the next clean-up); one now asked for as the version to run goes on waiting.
        if let Work::Deferred(v) = &self.work
            && desired_version(run) != Some(v)
        {
            self.work = Work::Idle;
        }
        for desire in [run, candidate] {
            if let Desire::Unusable(error) = desire {
                let new = self.held(&error.version).is_none();
                if new && self.slots.current.as_ref() != Some(&error.version) {
                    self.add_hold(&error.version, format!("{}: {}", error.kind, error.message));
                    self.last_error = Some(error.clone());
                    actions.push(Effect::Emit(EventKind::InstallFailed(error.clone())));
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
    fn next(&mut self) -> Vec<Effect> {
        if self.work != Work::Idle {
            return Vec::new();
        }
        let downloads_wait = self.gate.as_ref().is_some_and(|g| g.downloads_wait);
        if let Some(target) = self.target()
            && self.slots.current.as_ref() != Some(&target.version)
            && self.held(&target.version).is_none()
        {
            if downloads_wait {
                return Vec::new();
            }
            let target = target.clone();
            self.work = Work::Downloading(target.version.clone());
            return vec![Effect::Download(target)];
        }
        if downloads_wait {
            return Vec::new();
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
                self.work = Work::Downloading(t.version.clone());
                vec![Effect::Download(t)]
            }
            None if self.candidate.is_some() => vec![Effect::SetCandidate(None)],
            None => Vec::new(),
        }
    }

    /// The report of this model for the coordinator.
    pub fn report(&self) -> ModelReport {
        let phase = match &self.work {
            // A deferred switch reports as still updating (what coordinators before protocol 7
            // understand); the device's conditions say why it waits.
            Work::Downloading(v) | Work::Switching(v) | Work::Deferred(v) => {
                UpdatePhase::Fetching(v.clone())
            }
            Work::Probation { version, .. }
            | Work::Passed { version, .. }
            | Work::RollingBack { version, .. } => UpdatePhase::Probation(version.clone()),
            Work::Waiting(v) => UpdatePhase::Retrying {
                version: v.clone(),
                attempts: self.attempts,
            },
            Work::Idle => match self.target().and_then(|t| self.held(&t.version)) {
                Some(h) => UpdatePhase::Held {
                    version: h.version.clone(),
                    reason: h.reason.clone(),
                },
                None => UpdatePhase::Idle,
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

pub(super) fn first_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
}
