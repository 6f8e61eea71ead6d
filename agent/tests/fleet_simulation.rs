//! Ten thousand real update cores (the agent's [`Updater`]) against the real rollout engine,
//! in simulated time, without sockets or disks: each tick the coordinator's side turns the
//! devices' reports into facts (`DeviceFacts::from_report`, as the coordinator does), lets the engine
//! decide, and pushes each device what it should run; each device's machine steps through its
//! actions against a simulated disk, whose outcomes the scenario sets (a release that fails
//! its health check everywhere, say).
//!
//! What it shows: a healthy release reaches every device wave by wave; a bad one is stopped in
//! its first wave, every canary is back on the version it ran one tick after the decision and
//! reports why, and no device outside the first wave ever downloads it.

use std::collections::{BTreeMap, VecDeque};

use ferry_agent::updater::simulated::{Outcome, SimulatedDevice, admitted};
use ferry_agent::updater::{Desire, Effect, Event, Updater};
use ferry_shared::rollout::{
    Decision, DeviceFacts, Gate, GateKind, Phase, Plan, RolloutState, Selector, Wave, desired,
    evaluate,
};
use ferry_shared::wire::{DeviceId, ErrorKind};
use ferry_shared::{ModelName, Version};

/// Devices in the fleet (`FERRY_SIM_DEVICES` overrides it).
const DEVICES: usize = 10_000;
/// Simulated seconds per tick: every device carries out what it was told within one.
const TICK: u64 = 10;

fn v(s: &str) -> Version {
    s.parse().expect("a valid version")
}

/// One device: its update core, its disk, and what it was last told.
struct Device {
    id: DeviceId,
    machine: Updater,
    disk: SimulatedDevice,
    told: Option<Version>,
}

impl Device {
    /// Carries out every pending effect (a tick is long enough for all of them), feeding the
    /// machine each outcome; `healthy(v)` says whether `v` passes its health check here.
    fn run(&mut self, effects: Vec<Effect>, healthy: &dyn Fn(&Version) -> bool) {
        let mut pending = VecDeque::from(effects);
        while let Some(effect) = pending.pop_front() {
            let outcome = match &effect {
                Effect::CheckHealth(v) if !healthy(v) => Outcome::FailsForGood,
                _ => Outcome::Succeeds,
            };
            if let Some(event) = self.disk.carry(&effect, outcome) {
                pending.extend(self.machine.step(event));
            }
        }
    }

    /// What the coordinator knows of it for a rollout to `target`: the engine's reading of
    /// its report, every failure new since the rollout started.
    fn facts(&self, target: &Version) -> DeviceFacts {
        let report = self.machine.report();
        DeviceFacts::from_report(&self.id, BTreeMap::new(), Some(&report), target, true)
    }
}

/// The fleet, the rollout and the clock.
struct Fleet {
    devices: Vec<Device>,
    plan: Plan,
    state: RolloutState,
    /// What the alias names (the rollout moves it on completion).
    alias: Version,
    now: u64,
    decisions: Vec<(u64, Decision)>,
}

impl Fleet {
    fn new(count: usize, from: &Version, to: &Version) -> Self {
        let gate = |kind| Gate {
            kind,
            threshold: 0.05,
            min_samples: 5,
        };
        let wave = |share, bake| Wave {
            share,
            min_bake_secs: bake,
            gates: vec![
                gate(GateKind::InstallFailures),
                gate(GateKind::HealthFailures),
            ],
            shadow: false,
            needs_approval: false,
        };
        let mut plan = Plan::with_default_waves(
            "simulated",
            "detector".parse::<ModelName>().expect("a valid name"),
            to.clone(),
            Selector::parse("").expect("the empty selector"),
        );
        plan.waves = vec![
            wave(100, 60),
            wave(1_000, 60),
            wave(5_000, 60),
            wave(10_000, 60),
        ];
        plan.validate().expect("a valid plan");
        let devices = (0..count)
            .map(|i| {
                let disk = SimulatedDevice::running(from.clone());
                Device {
                    id: DeviceId::parse(&format!("{i:020x}")).expect("a device id"),
                    machine: Updater::new(
                        "detector".parse().expect("a valid name"),
                        disk.slots.clone(),
                        None,
                        Vec::new(),
                        None,
                    ),
                    disk,
                    told: None,
                }
            })
            .collect();
        Self {
            devices,
            state: RolloutState::start(&plan, 0),
            plan,
            alias: from.clone(),
            now: 0,
            decisions: Vec::new(),
        }
    }

    /// One tick: the engine decides on what devices reported, then every device is told what
    /// it should run (when that changed) and carries it out.
    fn tick(&mut self, healthy: &dyn Fn(&Version) -> bool) {
        self.now += TICK;
        let target = self.plan.target.clone();
        let facts: Vec<DeviceFacts> = self.devices.iter().map(|d| d.facts(&target)).collect();
        let evaluation = evaluate(&self.plan, &self.state, &facts, self.now);
        for decision in evaluation.decisions {
            self.state.apply(&decision, self.now);
            if decision == Decision::Complete {
                self.alias = target.clone();
            }
            self.decisions.push((self.now, decision));
        }
        for (device, facts) in self.devices.iter_mut().zip(&facts) {
            let wanted = match desired(&self.plan, &self.state, facts) {
                ferry_shared::rollout::Desired::Run(version) => version,
                _ => self.alias.clone(),
            };
            if device.told.as_ref() != Some(&wanted) {
                device.told = Some(wanted.clone());
                let effects = device
                    .machine
                    .step(Event::Desired(Desire::Run(admitted(&wanted))));
                device.run(effects, healthy);
            }
            assert!(
                device.disk.slots.current.is_some(),
                "device {} has no version",
                device.id
            );
        }
    }

    fn on(&self, version: &Version) -> usize {
        self.devices
            .iter()
            .filter(|d| d.disk.slots.current.as_ref() == Some(version))
            .count()
    }
}

fn devices() -> usize {
    std::env::var("FERRY_SIM_DEVICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEVICES)
}

#[test]
fn a_healthy_release_reaches_every_device_wave_by_wave() {
    let (old, new) = (v("1.0.0"), v("2.0.0"));
    let mut fleet = Fleet::new(devices(), &old, &new);
    let mut on_new_per_tick = Vec::new();
    while !fleet.state.phase.is_terminal() && fleet.now < 3_600 {
        fleet.tick(&|_| true);
        on_new_per_tick.push(fleet.on(&new));
    }
    assert_eq!(fleet.state.phase, Phase::Completed, "{:?}", fleet.decisions);
    // One more tick tells everyone the alias moved; nobody is left behind.
    fleet.tick(&|_| true);
    assert_eq!(fleet.on(&new), fleet.devices.len());
    assert!(
        fleet
            .devices
            .iter()
            .all(|d| d.disk.slots.previous == Some(old.clone()) && d.machine.holds().is_empty())
    );
    // Wave by wave: the fleet never jumps past a wave's share before its bake.
    let first = on_new_per_tick
        .iter()
        .copied()
        .find(|n| *n > 0)
        .unwrap_or(0);
    assert!(
        first * 100 <= fleet.devices.len() * 2,
        "{first} devices in the first wave of 1 %"
    );
    let advances = fleet
        .decisions
        .iter()
        .filter(|(_, d)| matches!(d, Decision::Advance { .. }))
        .count();
    assert_eq!(advances, 3, "{:?}", fleet.decisions);
}

#[test]
fn a_release_failing_its_health_check_is_stopped_in_its_first_wave_and_rolled_back() {
    let (old, bad) = (v("1.0.0"), v("2.0.0"));
    let mut fleet = Fleet::new(devices(), &old, &bad);
    let healthy = |version: &Version| *version != v("2.0.0");
    while !fleet.state.phase.is_terminal() && fleet.now < 3_600 {
        fleet.tick(&healthy);
    }
    assert_eq!(
        fleet.state.phase,
        Phase::RolledBack,
        "{:?}",
        fleet.decisions
    );
    // The rollback is pushed on the next tick; every canary is back by then.
    fleet.tick(&healthy);
    assert_eq!(fleet.on(&old), fleet.devices.len());
    let canaries: Vec<&Device> = fleet
        .devices
        .iter()
        .filter(|d| d.disk.installed.contains(&bad))
        .collect();
    assert!(!canaries.is_empty(), "no device tried the release");
    assert!(
        canaries.len() * 100 <= fleet.devices.len() * 2,
        "{} devices tried it, beyond the first wave of 1 %",
        canaries.len()
    );
    // Each canary reported why: the failed health check of the bad release.
    for device in &canaries {
        let error = device.machine.last_error();
        assert!(
            error.is_some_and(|e| e.version == bad && e.kind == ErrorKind::HealthCheck),
            "canary {} reports {error:?}",
            device.id
        );
    }
}
