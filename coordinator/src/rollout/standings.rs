//! Where each device of a rollout's cohort stands: in force or not, on the target, shadowing
//! it, failed, holding the rollout up, left out. One classification serves the counts of a
//! rollout's view and the device lists behind them (`GET /rollouts/{id}/devices`), so a count
//! and its list never disagree. Pure: the rollout, the devices' facts and the engine's
//! stragglers in, the standings out.

use std::collections::HashMap;

use ferry_shared::rollout::{DeviceFacts, Plan, RolloutState, Straggler};
use ferry_shared::wire::DeviceId;

use crate::api::{RolloutDevices, Standing};

/// One device of the cohort, with its wave and where it stands.
#[derive(Debug)]
pub(crate) struct Placed<'a> {
    /// The device.
    pub id: &'a DeviceId,
    /// What the coordinator knows of it.
    pub facts: &'a DeviceFacts,
    /// Its wave (index into the plan's waves).
    pub wave: usize,
    /// Why it holds the rollout up, when it does.
    pub straggler: Option<&'a Straggler>,
    in_force: bool,
}

impl Placed<'_> {
    /// Whether the device stands as `standing` says.
    pub(crate) fn is(&self, standing: Standing, target: &ferry_shared::Version) -> bool {
        let f = self.facts;
        match standing {
            Standing::Cohort => true,
            Standing::Targeted => self.in_force,
            Standing::OnTarget => f.current.as_ref() == Some(target),
            Standing::Shadowing => f.candidate.as_ref() == Some(target),
            Standing::InstallFailed => f.install_failed,
            Standing::HealthFailed => f.health_failed,
            Standing::HoldingUp => self.straggler.is_some(),
            Standing::LeftOut => self.straggler.is_some_and(|s| s.left_out),
        }
    }

    /// Every standing that holds for the device, in [`Standing::ALL`]'s order.
    pub(crate) fn standings(&self, target: &ferry_shared::Version) -> Vec<Standing> {
        Standing::ALL
            .into_iter()
            .filter(|s| self.is(*s, target))
            .collect()
    }
}

/// The devices of `plan`'s cohort among `facts`, in id order, each with its wave and the
/// straggler entry the engine made for it (from `stragglers`).
pub(crate) fn place<'a>(
    plan: &Plan,
    state: &RolloutState,
    facts: &'a [DeviceFacts],
    stragglers: &'a [Straggler],
) -> Vec<Placed<'a>> {
    let holding: HashMap<&DeviceId, &Straggler> =
        stragglers.iter().map(|s| (&s.device, s)).collect();
    let mut placed: Vec<Placed<'a>> = facts
        .iter()
        .filter_map(|f| {
            let id = f.id.as_ref()?;
            if !plan.cohort.matches(&f.labels) {
                return None;
            }
            let wave = plan.wave_of(plan.bucket(id));
            Some(Placed {
                id,
                facts: f,
                wave,
                straggler: holding.get(id).copied(),
                in_force: wave < state.in_force,
            })
        })
        .collect();
    placed.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    placed
}

/// How many of `placed` stand each way.
pub(crate) fn count(placed: &[Placed<'_>], target: &ferry_shared::Version) -> RolloutDevices {
    let n = |s: Standing| placed.iter().filter(|p| p.is(s, target)).count() as u64;
    RolloutDevices {
        cohort: n(Standing::Cohort),
        targeted: n(Standing::Targeted),
        on_target: n(Standing::OnTarget),
        shadowing: n(Standing::Shadowing),
        install_failed: n(Standing::InstallFailed),
        health_failed: n(Standing::HealthFailed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::rollout::{Holdup, Selector};
    use ferry_shared::sign::SecretKey;

    fn device(seed: u8, region: &str, current: &str) -> DeviceFacts {
        let key = SecretKey::from_seed(&[seed; 32]).public();
        DeviceFacts {
            id: Some(DeviceId::of(&key)),
            labels: [("region".to_owned(), region.to_owned())].into(),
            current: Some(current.parse().unwrap()),
            ..DeviceFacts::default()
        }
    }

    /// Two waves, 50 % and 100 %, over `cohort`; the first in force.
    fn rollout(cohort: &str) -> (Plan, RolloutState) {
        let mut plan = Plan::with_default_waves(
            "r",
            "m".parse().unwrap(),
            "2.0.0".parse().unwrap(),
            Selector::parse(cohort).unwrap(),
        );
        plan.waves.drain(..2);
        let state = RolloutState::start(&plan, 0);
        (plan, state)
    }

    #[test]
    fn only_the_cohort_is_placed_in_id_order_with_its_wave_and_holdup() {
        let (plan, state) = rollout("region=eu");
        let facts: Vec<DeviceFacts> = (1..=20)
            .map(|i| device(i, if i % 4 == 0 { "us" } else { "eu" }, "1.0.0"))
            .collect();
        let holder = facts[0].id.clone().unwrap();
        let stragglers = vec![Straggler {
            device: holder.clone(),
            wave: 0,
            holdup: Holdup::NotStarted,
            left_out: true,
        }];
        let placed = place(&plan, &state, &facts, &stragglers);
        assert_eq!(
            placed.len(),
            15,
            "the five us devices are not in the cohort"
        );
        assert!(
            placed
                .windows(2)
                .all(|w| w[0].id.as_str() < w[1].id.as_str())
        );
        for p in &placed {
            assert_eq!(p.wave, plan.wave_of(plan.bucket(p.id)));
            assert_eq!(p.is(Standing::Targeted, &plan.target), p.wave == 0);
        }
        let held = placed.iter().find(|p| *p.id == holder).unwrap();
        let mut expected = vec![Standing::Cohort];
        if held.wave == 0 {
            expected.push(Standing::Targeted);
        }
        expected.extend([Standing::HoldingUp, Standing::LeftOut]);
        assert_eq!(held.standings(&plan.target), expected);
    }

    #[test]
    fn the_counts_are_the_lengths_of_the_lists() {
        let (plan, mut state) = rollout("");
        state.in_force = 2;
        let mut facts: Vec<DeviceFacts> = (1..=12).map(|i| device(i, "eu", "1.0.0")).collect();
        facts[0].current = Some("2.0.0".parse().unwrap());
        facts[1].candidate = Some("2.0.0".parse().unwrap());
        facts[2].install_failed = true;
        facts[3].health_failed = true;
        facts.push(DeviceFacts::default()); // no id: never placed
        let placed = place(&plan, &state, &facts, &[]);
        let counts = count(&placed, &plan.target);
        let listed = |s: Standing| placed.iter().filter(|p| p.is(s, &plan.target)).count() as u64;
        assert_eq!(
            [
                counts.cohort,
                counts.targeted,
                counts.on_target,
                counts.shadowing,
                counts.install_failed,
                counts.health_failed
            ],
            [12, 12, 1, 1, 1, 1]
        );
        assert_eq!(
            [
                listed(Standing::Cohort),
                listed(Standing::Targeted),
                listed(Standing::OnTarget),
                listed(Standing::Shadowing),
                listed(Standing::InstallFailed),
                listed(Standing::HealthFailed)
            ],
            [12, 12, 1, 1, 1, 1]
        );
    }
}
