//! The machine against a simulated device, on event orders and outcomes proptest generates:
//! whatever the coordinator asks and however downloads, switches and health checks go, the
//! device always runs a complete version, the machine knows which, and a held version is
//! never downloaded or switched to; for a model in an update set too, whenever the set
//! commits, aborts, holds it back or lets it go.

use std::collections::VecDeque;

use ferry_shared::Version;
use proptest::prelude::*;

use super::simulated::{Outcome, SimulatedDevice, admitted};
use super::*;

/// One step of the script.
#[derive(Clone, Debug)]
enum Step {
    /// The coordinator asks for version `n` (or for nothing, as an unset alias).
    Desire(Option<u8>),
    /// The coordinator names version `n` as the shadow candidate (or none).
    Candidate(Option<u8>),
    /// The device carries out the oldest pending action, this way.
    Carry(Outcome),
    /// The model's update set decides (only for a machine in a set).
    Set(SetStep),
}

/// What an update set tells one member, at any moment.
#[derive(Clone, Copy, Debug)]
enum SetStep {
    /// Every member passed: confirm.
    Commit,
    /// Another member failed: undo the switch.
    Abort,
    /// Wait for another member.
    Close,
    /// Go ahead.
    Open,
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

fn step_in_a_set() -> impl Strategy<Value = Step> {
    let set = prop_oneof![
        Just(SetStep::Commit),
        Just(SetStep::Abort),
        Just(SetStep::Close),
        Just(SetStep::Open),
    ];
    prop_oneof![6 => step(), 2 => set.prop_map(Step::Set)]
}

fn version(n: u8) -> Version {
    Version::new(2, u64::from(n), 0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_device_always_runs_a_complete_version_and_never_installs_a_held_one(
        script in proptest::collection::vec(step(), 1..120),
    ) {
        run(script, false)?;
    }

    #[test]
    fn in_an_update_set_too_whenever_the_set_commits_aborts_or_waits(
        script in proptest::collection::vec(step_in_a_set(), 1..120),
    ) {
        run(script, true)?;
    }
}

/// Plays `script` against a simulated device, checking the invariants after every step.
fn run(script: Vec<Step>, in_set: bool) -> Result<(), TestCaseError> {
    let mut device = SimulatedDevice::running(version(9));
    let mut machine = Updater::new(
        "m".parse().expect("name"),
        device.slots.clone(),
        None,
        Vec::new(),
        None,
    );
    if in_set {
        machine.join_update_set();
    }
    let mut pending: VecDeque<Effect> = VecDeque::new();
    for step in script {
        let event = match step {
            Step::Desire(n) => {
                Some(Event::Desired(n.map_or(Desire::Nothing, |n| {
                    Desire::Run(admitted(&version(n)))
                })))
            }
            Step::Candidate(n) => {
                Some(Event::Candidate(n.map_or(Desire::Nothing, |n| {
                    Desire::Run(admitted(&version(n)))
                })))
            }
            Step::Carry(outcome) => match pending.pop_front() {
                Some(action) => device.carry(&action, outcome),
                None => None,
            },
            Step::Set(SetStep::Commit) => Some(Event::SetCommitted),
            Step::Set(SetStep::Abort) => Some(Event::SetAborted),
            Step::Set(SetStep::Close) => Some(Event::Gate {
                closed: Some(ferry_shared::wire::DeferReason::UpdateSet {
                    waiting_for: "n".parse().expect("name"),
                }),
                downloads_wait: false,
                now: 0,
            }),
            Step::Set(SetStep::Open) => Some(Event::Gate {
                closed: None,
                downloads_wait: false,
                now: 0,
            }),
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
        prop_assert!(
            current
                .as_ref()
                .is_some_and(|v| device.installed.contains(v)),
            "{:?}",
            device.slots
        );
        // Whenever no install is under way, the machine knows what the links name.
        if machine.is_settled() && !device.in_probation() {
            prop_assert_eq!(machine.slots(), &device.slots);
        }
    }
    Ok(())
}
