//! The machine against a simulated device, on event orders and outcomes proptest generates:
//! whatever the coordinator asks and however downloads, switches and health checks go, the
//! device always runs a complete version, the machine knows which, and a held version is
//! never downloaded or switched to.

use std::collections::{BTreeSet, VecDeque};

use ferry_shared::Version;
use ferry_shared::wire::{ErrorKind, InstallError};
use proptest::prelude::*;

use super::tests::target;
use super::*;

/// What the simulated device does with the next action that has an outcome.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Succeeds,
    FailsForGood,
    FailsForNow,
    FailsOffline,
}

/// One step of the script.
#[derive(Clone, Debug)]
enum Step {
    /// The coordinator asks for version `n` (or for nothing, as an unset alias).
    Desire(Option<u8>),
    /// The coordinator names version `n` as the shadow candidate (or none).
    Candidate(Option<u8>),
    /// The device carries out the oldest pending action, this way.
    Carry(Outcome),
}

fn step() -> impl Strategy<Value = Step> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Succeeds),
        1 => Just(Outcome::FailsForGood),
        1 => Just(Outcome::FailsForNow),
        1 => Just(Outcome::FailsOffline),
    ];
    prop_oneof![
        2 => proptest::option::weighted(0.9, 0u8..4).prop_map(Step::Desire),
        1 => proptest::option::of(0u8..4).prop_map(Step::Candidate),
        8 => outcome.prop_map(Step::Carry),
    ]
}

fn version(n: u8) -> Version {
    Version::new(2, u64::from(n), 0)
}

fn failure(version: &Version, kind: ErrorKind) -> InstallError {
    InstallError {
        version: version.clone(),
        kind,
        message: "simulated".into(),
        at: 0,
    }
}

/// The device's disk: the two links, what is installed, and the slots a switch in probation
/// would go back to.
struct Device {
    slots: Slots,
    installed: BTreeSet<Version>,
    before_switch: Option<Slots>,
}

impl Device {
    /// The event the machine gets back for `action` done as `outcome`, if it gets one.
    fn carry(&mut self, action: &Effect, outcome: Outcome) -> Option<Event> {
        let ok = matches!(outcome, Outcome::Succeeds);
        match action {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_device_always_runs_a_complete_version_and_never_installs_a_held_one(
        script in proptest::collection::vec(step(), 1..120),
    ) {
        let start = version(9);
        let mut device = Device {
            slots: Slots { current: Some(start.clone()), previous: None },
            installed: BTreeSet::from([start.clone()]),
            before_switch: None,
        };
        let mut machine = Updater::new("m".parse().expect("name"), device.slots.clone(), None, Vec::new(), None);
        let mut pending: VecDeque<Effect> = VecDeque::new();
        for step in script {
            let event = match step {
                Step::Desire(n) => Some(Event::Desired(n.map_or(Desire::Nothing, |n| Desire::Run(target(&version(n).to_string()))))),
                Step::Candidate(n) => Some(Event::Candidate(n.map_or(Desire::Nothing, |n| Desire::Run(target(&version(n).to_string()))))),
                Step::Carry(outcome) => match pending.pop_front() {
                    Some(action) => device.carry(&action, outcome),
                    None => None,
                },
            };
            let Some(event) = event else { continue };
            let held_before: Vec<Version> = machine.holds().iter().map(|h| h.version.clone()).collect();
            let actions = machine.step(event.clone());
            for action in &actions {
                if let Effect::Download(Admitted { version: v, .. }) | Effect::Switch(v) = action {
                    prop_assert!(
                        !held_before.contains(v) && machine.holds().iter().all(|h| &h.version != v),
                        "{action:?} of a held version after {event:?}"
                    );
                }
            }
            pending.extend(actions);
            // A complete, verified version is always active.
            let current = device.slots.current.clone();
            prop_assert!(current.as_ref().is_some_and(|v| device.installed.contains(v)), "{:?}", device.slots);
            // Whenever no install is under way, the machine knows what the links name.
            if machine.is_settled() && device.before_switch.is_none() {
                prop_assert_eq!(machine.slots(), &device.slots);
            }
        }
    }
}
