//! The engine driven by 10,000 simulated devices in simulated time.

use std::collections::BTreeMap;

use super::*;
use crate::name::ModelName;
use crate::version::Version;
use crate::wire::DeviceId;

const MINUTE: u64 = 60;

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

/// A fleet in simulated time: each device installs what the engine wants on the next tick and
/// serves requests whose error rate and latency depend on the version it runs.
struct Sim {
    plan: Plan,
    state: RolloutState,
    devices: Vec<DeviceFacts>,
    now: u64,
    rng: u64,
    /// Error rate per version (per mille), and p95-ish latency (ms).
    behaviour: BTreeMap<Version, (u64, u32)>,
    requests_per_tick: u64,
    /// Every decision applied, with the wave in force before it.
    log: Vec<(usize, Decision)>,
    /// The largest number of devices ever on the target at once.
    peak_on_target: usize,
    /// Mean of the `score` each version gives (reported per request, spread ±0.1 around it);
    /// versions not named report no score.
    scores: BTreeMap<Version, f64>,
}

fn device_id(i: usize) -> DeviceId {
    DeviceId::parse(&format!("{i:020x}")).unwrap()
}

impl Sim {
    fn new(count: usize, behaviour: &[(&str, u64, u32)], plan: Plan) -> Self {
        let devices = (0..count).map(|i| Self::device(i, "1.0.0")).collect();
        let state = RolloutState::start(&plan, 0);
        Self {
            plan,
            state,
            devices,
            now: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            behaviour: behaviour
                .iter()
                .map(|(ver, e, l)| (v(ver), (*e, *l)))
                .collect(),
            requests_per_tick: 20,
            log: Vec::new(),
            peak_on_target: 0,
            scores: BTreeMap::new(),
        }
    }

    fn device(i: usize, running: &str) -> DeviceFacts {
        let mut labels = BTreeMap::new();
        labels.insert(
            "region".into(),
            if i.is_multiple_of(3) { "eu" } else { "us" }.into(),
        );
        DeviceFacts {
            id: Some(device_id(i)),
            labels,
            current: Some(v(running)),
            ..DeviceFacts::default()
        }
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// One tick of ten simulated minutes: devices move, serve, report; the engine decides.
    /// A device told to shadow a candidate serves every request with both versions.
    fn tick(&mut self) {
        self.now += 10 * MINUTE;
        for i in 0..self.devices.len() {
            let want = desired(&self.plan, &self.state, &self.devices[i]);
            let d = &mut self.devices[i];
            if let Desired::Run(version) = &want
                && d.current.as_ref() != Some(version)
            {
                d.previous = d.current.replace(version.clone());
            }
            let Some(running) = d.current.clone() else {
                continue;
            };
            d.candidate = match want {
                Desired::Shadow(candidate) => Some(candidate),
                _ => None,
            };
            let mut served = vec![running];
            served.extend(d.candidate.clone());
            for version in served {
                let m = self.serve(&version);
                let scores = self.score(&version);
                let d = &mut self.devices[i];
                if let Some(scores) = scores {
                    d.distributions
                        .entry(version.clone())
                        .or_default()
                        .entry("score".into())
                        .or_default()
                        .merge(&scores);
                }
                d.metrics.entry(version).or_default().merge(&m);
            }
        }
        let on_target = self
            .devices
            .iter()
            .filter(|d| d.current.as_ref() == Some(&self.plan.target))
            .count();
        self.peak_on_target = self.peak_on_target.max(on_target);
        let evaluation = evaluate(&self.plan, &self.state, &self.devices, self.now);
        for decision in evaluation.decisions {
            self.log.push((self.state.in_force, decision.clone()));
            self.state.apply(&decision, self.now);
        }
    }

    /// One tick's requests served by `version`.
    fn serve(&mut self, version: &Version) -> VersionMetrics {
        let (errors_pm, latency) = self.behaviour.get(version).copied().unwrap_or((10, 20));
        let mut m = VersionMetrics::default();
        for _ in 0..self.requests_per_tick {
            let r = self.next();
            m.requests += 1;
            if r % 1000 < errors_pm {
                m.errors += 1;
            }
            m.latency.record(latency / 2 + (r >> 20) as u32 % latency);
        }
        m
    }

    /// One tick's prediction scores from `version`: uniform within ±0.1 of its mean.
    fn score(&mut self, version: &Version) -> Option<Distribution> {
        let mean = *self.scores.get(version)?;
        let mut d = Distribution::default();
        for _ in 0..self.requests_per_tick {
            let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
            d.record(mean + 0.2 * (unit - 0.5));
        }
        Some(d)
    }

    fn run_until_settled(&mut self, max_ticks: usize) {
        for _ in 0..max_ticks {
            if self.state.phase.is_terminal() {
                // One more tick lets devices follow the final decision.
                self.tick();
                return;
            }
            self.tick();
        }
    }

    fn on(&self, version: &str) -> usize {
        self.devices
            .iter()
            .filter(|d| d.current.as_ref() == Some(&v(version)))
            .count()
    }
}

fn plan(target: &str) -> Plan {
    Plan::with_default_waves(
        "rollout-1",
        "detector".parse::<ModelName>().unwrap(),
        v(target),
        Selector::all(),
    )
}

#[test]
fn placement_is_stable_uniform_and_independent_per_rollout() {
    let a = plan("2.0.0");
    let mut b = plan("2.0.0");
    b.id = "rollout-2".into();
    let ids: Vec<DeviceId> = (0..10_000).map(device_id).collect();
    let canary_a = ids.iter().filter(|d| a.bucket(d) < 500).count();
    assert!(
        (400..600).contains(&canary_a),
        "5 % of 10,000 is about 500: {canary_a}"
    );
    assert!(ids.iter().all(|d| a.bucket(d) == a.bucket(d)));
    let both = ids
        .iter()
        .filter(|d| a.bucket(d) < 500 && b.bucket(d) < 500)
        .count();
    assert!(
        both < 60,
        "another rollout picks other canaries: {both} in both"
    );
    assert!(a.validate().is_ok());
    let mut bad = a.clone();
    bad.waves[3].share = 9000;
    assert!(matches!(bad.validate(), Err(PlanError::Shares(_))));
}

#[test]
fn a_good_version_goes_from_five_to_a_hundred_percent() {
    let mut sim = Sim::new(
        10_000,
        &[("1.0.0", 10, 40), ("2.0.0", 10, 40)],
        plan("2.0.0"),
    );
    sim.tick();
    let canary = sim.on("2.0.0");
    assert!((400..600).contains(&canary), "first wave ≈ 5 %: {canary}");
    sim.run_until_settled(200);
    assert_eq!(sim.state.phase, Phase::Completed, "{:?}", sim.log);
    assert_eq!(sim.on("2.0.0"), 10_000);
    let advances: Vec<usize> = sim
        .log
        .iter()
        .filter_map(|(_, d)| match d {
            Decision::Advance { wave } => Some(*wave),
            _ => None,
        })
        .collect();
    assert_eq!(advances, vec![1, 2, 3]);
    // Every wave baked at least its hour.
    assert!(sim.now >= 4 * 3600);
}

#[test]
fn a_bad_version_is_rolled_back_in_the_canary_wave() {
    // Error rate 1 % → 6 %: the canary's gate sees it and rolls back before wave 2.
    let mut sim = Sim::new(
        10_000,
        &[("1.0.0", 10, 40), ("2.0.0", 60, 40)],
        plan("2.0.0"),
    );
    sim.run_until_settled(200);
    assert_eq!(sim.state.phase, Phase::RolledBack);
    assert!(
        sim.log
            .iter()
            .all(|(_, d)| !matches!(d, Decision::Advance { .. })),
        "never left the canary wave: {:?}",
        sim.log
    );
    assert!(
        sim.peak_on_target < 600,
        "only the canary ever ran it: {}",
        sim.peak_on_target
    );
    let reason = sim.state.reason.clone().unwrap_or_default();
    assert!(reason.contains("ErrorRateIncrease"), "{reason}");
    assert_eq!(sim.on("2.0.0"), 0, "every device returned");
    assert_eq!(sim.on("1.0.0"), 10_000);
}

#[test]
fn slow_versions_trip_the_latency_gate() {
    let mut sim = Sim::new(
        2_000,
        &[("1.0.0", 10, 40), ("2.0.0", 10, 400)],
        plan("2.0.0"),
    );
    sim.run_until_settled(200);
    assert_eq!(sim.state.phase, Phase::RolledBack);
    assert!(
        sim.state
            .reason
            .clone()
            .unwrap_or_default()
            .contains("P95LatencyRatio")
    );
}

#[test]
fn a_noisy_good_version_under_the_minimum_sample_is_not_rolled_back() {
    // 40 devices: the canary wave holds about two, serving a handful of requests per tick,
    // and the new version's errors look terrible at first (30 % instead of 1 %) …
    let mut sim = Sim::new(40, &[("1.0.0", 10, 40), ("2.0.0", 300, 40)], plan("2.0.0"));
    sim.requests_per_tick = 5;
    for _ in 0..5 {
        sim.tick();
        assert_ne!(
            sim.state.phase,
            Phase::RolledBack,
            "decided on {} requests",
            {
                sim.devices
                    .iter()
                    .filter_map(|d| d.metrics.get(&v("2.0.0")))
                    .map(|m| m.requests)
                    .sum::<u64>()
            }
        );
    }
    let report = evaluate(&sim.plan, &sim.state, &sim.devices, sim.now);
    let error_gate = report
        .gates
        .iter()
        .find(|g| g.gate.kind == GateKind::ErrorRateIncrease)
        .unwrap();
    assert_eq!(error_gate.verdict, Verdict::Waiting, "{error_gate:?}");
    assert!(error_gate.samples < error_gate.gate.min_samples);
    // … and the same small difference as a real, good version (1.2 % vs 1 %) with plenty of
    // samples is within noise and the threshold: the rollout completes.
    let mut sim = Sim::new(
        10_000,
        &[("1.0.0", 10, 40), ("2.0.0", 12, 40)],
        plan("2.0.0"),
    );
    sim.run_until_settled(200);
    assert_eq!(sim.state.phase, Phase::Completed, "{:?}", sim.log);
}

#[test]
fn devices_that_join_mid_rollout_land_in_their_wave() {
    let mut sim = Sim::new(
        5_000,
        &[("1.0.0", 10, 40), ("2.0.0", 10, 40)],
        plan("2.0.0"),
    );
    // Run into the second wave (25 %).
    while sim.state.in_force < 2 {
        sim.tick();
    }
    // 5,000 devices enroll now, on the old version.
    sim.devices
        .extend((5_000..10_000).map(|i| Sim::device(i, "1.0.0")));
    sim.tick();
    let joined = &sim.devices[5_000..];
    for d in joined {
        let bucket = sim.plan.bucket(d.id.as_ref().unwrap());
        let expect_new = bucket < sim.plan.waves[1].share;
        assert_eq!(
            d.current.as_ref() == Some(&v("2.0.0")),
            expect_new,
            "bucket {bucket}"
        );
    }
    let new = joined
        .iter()
        .filter(|d| d.current == Some(v("2.0.0")))
        .count();
    assert!(
        (1_100..1_400).contains(&new),
        "about 25 % of the newcomers: {new}"
    );
}

#[test]
fn the_cohort_selector_limits_who_moves() {
    let mut p = plan("2.0.0");
    p.cohort = Selector::parse("region=eu").unwrap();
    let mut sim = Sim::new(3_000, &[("1.0.0", 10, 40), ("2.0.0", 10, 40)], p);
    sim.run_until_settled(200);
    assert_eq!(sim.state.phase, Phase::Completed);
    for d in &sim.devices {
        let eu = d.labels.get("region").map(String::as_str) == Some("eu");
        assert_eq!(d.current == Some(v("2.0.0")), eu);
    }
}

#[test]
fn approval_pause_resume_and_abort_work_at_every_stage() {
    let mut with_approval = plan("2.0.0");
    for w in &mut with_approval.waves[1..] {
        w.needs_approval = true;
    }
    for stop_at in 0..=4 {
        let mut sim = Sim::new(
            2_000,
            &[("1.0.0", 10, 40), ("2.0.0", 10, 40)],
            with_approval.clone(),
        );
        let mut approvals = 0;
        loop {
            sim.tick();
            if sim.state.phase == Phase::AwaitingApproval {
                // Waiting does not advance on its own, however long it waits.
                let before = sim.state.clone();
                for _ in 0..10 {
                    sim.tick();
                }
                assert_eq!(sim.state, before);
                if approvals == stop_at {
                    break;
                }
                // Pause blocks approval until resumed.
                sim.state.command(&Command::Pause, sim.now).unwrap();
                assert!(sim.state.command(&Command::Approve, sim.now).is_err());
                sim.state.command(&Command::Resume, sim.now).unwrap();
                sim.state.command(&Command::Approve, sim.now).unwrap();
                approvals += 1;
            }
            if sim.state.phase.is_terminal() {
                break;
            }
        }
        if stop_at < 3 {
            let on_new = sim.on("2.0.0");
            sim.state
                .command(&Command::Abort("operator".into()), sim.now)
                .unwrap();
            assert_eq!(sim.state.phase, Phase::Aborted);
            for _ in 0..5 {
                sim.tick();
            }
            assert_eq!(
                sim.on("2.0.0"),
                on_new,
                "abort leaves devices where they are"
            );
            // Abort always works, even twice; nothing else does once it ended.
            assert!(
                sim.state
                    .command(&Command::Abort("again".into()), sim.now)
                    .is_ok()
            );
            assert!(sim.state.command(&Command::Resume, sim.now).is_err());
        } else {
            assert_eq!(sim.state.phase, Phase::Completed, "stop_at {stop_at}");
            assert_eq!(sim.on("2.0.0"), 2_000);
        }
    }
}

#[test]
fn pausing_holds_the_wave_and_an_operator_rollback_returns_everyone() {
    let mut sim = Sim::new(
        2_000,
        &[("1.0.0", 10, 40), ("2.0.0", 10, 40)],
        plan("2.0.0"),
    );
    while sim.state.in_force < 2 {
        sim.tick();
    }
    sim.state.command(&Command::Pause, sim.now).unwrap();
    for _ in 0..30 {
        sim.tick();
    }
    assert_eq!(
        sim.state.in_force, 2,
        "paused for five hours, still in wave 2"
    );
    sim.state
        .command(&Command::RollBack("customer report".into()), sim.now)
        .unwrap();
    sim.tick();
    assert_eq!(sim.on("2.0.0"), 0);
    assert_eq!(sim.on("1.0.0"), 2_000);
    assert_eq!(sim.state.reason.as_deref(), Some("customer report"));
}

#[test]
fn a_shadow_wave_stages_without_serving_and_its_gates_compare_the_candidate() {
    let mut p = plan("2.0.0");
    p.waves[0].shadow = true;
    let sim = Sim::new(2_000, &[], p);
    let d = sim
        .devices
        .iter()
        .find(|d| sim.plan.wave_of(sim.plan.bucket(d.id.as_ref().unwrap())) == 0)
        .unwrap();
    assert_eq!(
        desired(&sim.plan, &sim.state, d),
        Desired::Shadow(v("2.0.0"))
    );
    // Shadow metrics of the candidate, far worse than current on the same devices: rollback.
    let mut devices = sim.devices.clone();
    for d in &mut devices {
        let bad = VersionMetrics {
            requests: 5_000,
            errors: 1_000,
            ..VersionMetrics::default()
        };
        let good = VersionMetrics {
            requests: 5_000,
            errors: 50,
            ..VersionMetrics::default()
        };
        d.metrics.insert(v("1.0.0"), good);
        if sim.plan.wave_of(sim.plan.bucket(d.id.as_ref().unwrap())) == 0 {
            d.candidate = Some(v("2.0.0"));
            d.metrics.insert(v("2.0.0"), bad);
        }
    }
    let e = evaluate(&sim.plan, &sim.state, &devices, 10);
    assert!(
        matches!(e.decisions.as_slice(), [Decision::RollBack { .. }]),
        "{e:?}"
    );
    // The same figures from devices that no longer stage the candidate (left over from an
    // earlier attempt) do not speak for it.
    for d in &mut devices {
        d.candidate = None;
    }
    let e = evaluate(&sim.plan, &sim.state, &devices, 10);
    assert!(e.decisions.is_empty(), "{e:?}");
}

/// The default plan with a shadow wave over the canary's devices in front.
fn shadow_first(target: &str) -> Plan {
    let mut p = plan(target);
    let mut shadow = p.waves[0].clone();
    shadow.shadow = true;
    p.waves.insert(0, shadow);
    p.validate().unwrap();
    p
}

#[test]
fn a_good_candidate_shadowed_first_then_serves_and_completes() {
    let mut sim = Sim::new(
        10_000,
        &[("1.0.0", 10, 40), ("2.0.0", 10, 40)],
        shadow_first("2.0.0"),
    );
    sim.tick();
    assert_eq!(sim.state.in_force, 1);
    assert_eq!(sim.on("2.0.0"), 0, "nobody serves a shadow candidate");
    let shadowing = sim
        .devices
        .iter()
        .filter(|d| d.metrics.contains_key(&v("2.0.0")))
        .count();
    assert!((400..600).contains(&shadowing), "{shadowing}");
    sim.run_until_settled(200);
    assert_eq!(sim.state.phase, Phase::Completed, "{:?}", sim.log);
    assert_eq!(sim.on("2.0.0"), 10_000);
}

#[test]
fn a_bad_candidate_is_rolled_back_in_shadow_before_any_device_serves_it() {
    let mut sim = Sim::new(
        10_000,
        &[("1.0.0", 10, 40), ("2.0.0", 200, 40)],
        shadow_first("2.0.0"),
    );
    sim.run_until_settled(200);
    assert_eq!(sim.state.phase, Phase::RolledBack, "{:?}", sim.log);
    assert_eq!(sim.peak_on_target, 0, "no device ever served 2.0.0");
    assert_eq!(sim.on("1.0.0"), 10_000);
}

#[test]
fn shadow_waves_come_first_and_the_last_wave_serves() {
    let mut p = plan("2.0.0");
    p.waves[1].shadow = true;
    assert_eq!(p.validate(), Err(PlanError::ShadowOrder));
    let mut p = plan("2.0.0");
    p.waves.truncate(1);
    p.waves[0].share = BUCKETS;
    p.waves[0].shadow = true;
    assert_eq!(p.validate(), Err(PlanError::ShadowOrder));
    // Two serving waves may not share a share; a shadow wave and the serving one after may.
    let mut p = plan("2.0.0");
    p.waves[1].share = p.waves[0].share;
    assert!(matches!(p.validate(), Err(PlanError::Shares(_))));
    p.waves[0].shadow = true;
    assert_eq!(p.validate(), Ok(()));
}

#[test]
fn a_device_in_probation_on_the_target_is_not_an_outcome_yet() {
    let mut p = plan("2.0.0");
    for w in &mut p.waves {
        w.gates = vec![Gate {
            kind: GateKind::HealthFailures,
            threshold: 0.0,
            min_samples: 1,
        }];
        w.min_bake_secs = 0;
    }
    let sim = Sim::new(200, &[], p);
    let mut devices = sim.devices.clone();
    for d in &mut devices {
        if desired(&sim.plan, &sim.state, d) == Desired::Run(v("2.0.0")) {
            d.previous = d.current.replace(v("2.0.0"));
            d.installing = true;
        }
    }
    let e = evaluate(&sim.plan, &sim.state, &devices, 10);
    assert_eq!(e.gates[0].verdict, Verdict::Waiting, "{e:?}");
    assert!(
        e.decisions.is_empty(),
        "no advance on switches not yet confirmed"
    );
    for d in &mut devices {
        d.installing = false;
    }
    let e = evaluate(&sim.plan, &sim.state, &devices, 10);
    assert!(
        matches!(e.decisions.as_slice(), [Decision::Advance { wave: 1 }]),
        "{e:?}"
    );
}

/// A one-wave plan of 100 % with a one-second bake, gated on install failures over ten
/// devices, as the outside tester's stalled rollout was.
fn one_wave(target: &str) -> Plan {
    let mut p = plan(target);
    p.waves = vec![Wave {
        share: BUCKETS,
        min_bake_secs: 1,
        gates: vec![Gate {
            kind: GateKind::InstallFailures,
            threshold: 0.5,
            min_samples: 10,
        }],
        shadow: false,
        needs_approval: false,
    }];
    p
}

/// Seven devices: six on the target, the seventh as `last` makes it.
fn seven(last: impl FnOnce(&mut DeviceFacts)) -> Vec<DeviceFacts> {
    let mut devices: Vec<DeviceFacts> = (0..7).map(|i| Sim::device(i, "2.0.0")).collect();
    let seventh = &mut devices[6];
    seventh.current = Some(v("1.0.0"));
    last(seventh);
    devices
}

#[test]
fn a_device_pinned_by_a_hand_rollback_is_named_and_left_out_instead_of_stalling_the_wave() {
    let plan = one_wave("2.0.0");
    let state = RolloutState::start(&plan, 0);
    let devices = seven(|d| d.pinned = true);
    let out = evaluate(&plan, &state, &devices, 10);
    assert_eq!(out.decisions, vec![Decision::Complete], "{out:?}");
    assert_eq!(out.stragglers.len(), 1);
    let straggler = &out.stragglers[0];
    assert_eq!(straggler.device, device_id(6));
    assert_eq!(straggler.holdup, Holdup::Pinned);
    assert!(straggler.left_out);
    // The gate passed on the six that take part, fewer than its minimum of ten.
    assert_eq!(out.gates[0].verdict, Verdict::Pass);
    assert_eq!(out.gates[0].samples, 6);
}

#[test]
fn more_left_out_than_the_plan_allows_holds_the_wave_and_says_so() {
    let mut plan = one_wave("2.0.0");
    plan.stragglers.max_left_out = 0.1; // 0 of 7 may be left out
    let state = RolloutState::start(&plan, 0);
    let out = evaluate(&plan, &state, &seven(|d| d.pinned = true), 10);
    assert!(out.decisions.is_empty(), "{out:?}");
    assert!(out.too_many_left_out);
}

#[test]
fn an_offline_device_holds_the_wave_until_the_plan_gives_up_on_it() {
    let plan = one_wave("2.0.0");
    let state = RolloutState::start(&plan, 0);
    let devices = seven(|d| d.offline_since = Some(5));
    let early = evaluate(&plan, &state, &devices, 60);
    assert!(
        early.decisions.is_empty(),
        "waits for it at first: {early:?}"
    );
    assert_eq!(early.stragglers[0].holdup, Holdup::Offline { since: 5 });
    assert!(!early.stragglers[0].left_out);
    assert_eq!(early.gates[0].verdict, Verdict::Waiting);
    let late = evaluate(&plan, &state, &devices, 5 + 1800);
    assert!(late.stragglers[0].left_out);
    assert_eq!(late.decisions, vec![Decision::Complete], "{late:?}");
}

#[test]
fn installing_and_not_started_devices_are_named_but_waited_for() {
    let plan = one_wave("2.0.0");
    let state = RolloutState::start(&plan, 0);
    let installing = evaluate(&plan, &state, &seven(|d| d.installing = true), 10);
    assert_eq!(installing.stragglers[0].holdup, Holdup::Installing);
    assert!(installing.decisions.is_empty());
    let failing = seven(|d| {
        d.installing = true;
        d.retrying = Some("download: connection lost".into());
    });
    let failing = evaluate(&plan, &state, &failing, 10);
    assert_eq!(
        failing.stragglers[0].holdup,
        Holdup::Failing("download: connection lost".into())
    );
    assert!(!failing.stragglers[0].left_out && failing.decisions.is_empty());
    let idle = evaluate(&plan, &state, &seven(|_| {}), 10);
    assert_eq!(idle.stragglers[0].holdup, Holdup::NotStarted);
    assert!(!idle.stragglers[0].left_out);
    assert!(idle.decisions.is_empty());
    // A failed device has its outcome: it is no straggler, it counts against the gate.
    let failed = evaluate(&plan, &state, &seven(|d| d.install_failed = true), 10);
    assert!(failed.stragglers.is_empty());
}

#[test]
fn a_share_of_left_out_devices_outside_zero_to_one_is_refused() {
    let mut p = plan("2.0.0");
    p.stragglers.max_left_out = 1.5;
    assert!(matches!(p.validate(), Err(PlanError::LeftOut(_))));
    p.stragglers.max_left_out = f64::NAN;
    assert!(matches!(p.validate(), Err(PlanError::LeftOut(_))));
}

/// One canary wave of 5 % then everyone, gated on the drift of `score` only.
fn drift_plan(target: &str, statistic: DriftStatistic, min_samples: u64) -> Plan {
    let mut plan = plan(target);
    plan.waves.truncate(2);
    plan.waves[1].share = BUCKETS;
    for wave in &mut plan.waves {
        wave.gates = vec![Gate {
            kind: GateKind::Drift {
                metric: "score".into(),
                statistic,
            },
            threshold: match statistic {
                DriftStatistic::Psi => 0.3,
                DriftStatistic::Ks => 0.2,
            },
            min_samples,
        }];
    }
    plan
}

fn drift_sim(target_mean: f64, statistic: DriftStatistic, min_samples: u64) -> Sim {
    let mut sim = Sim::new(
        2_000,
        &[("1.0.0", 10, 40), ("2.0.0", 10, 40)],
        drift_plan("2.0.0", statistic, min_samples),
    );
    sim.scores = [(v("1.0.0"), 0.60), (v("2.0.0"), target_mean)].into();
    sim
}

#[test]
fn a_shifted_score_distribution_halts_the_canary_and_rolls_back() {
    for statistic in [DriftStatistic::Psi, DriftStatistic::Ks] {
        // Same error rate and latency: only the scores moved, from 0.6 to 0.7 on average.
        let mut sim = drift_sim(0.70, statistic, 500);
        sim.run_until_settled(100);
        assert_eq!(
            sim.state.phase,
            Phase::RolledBack,
            "{statistic:?}: {:?}",
            sim.log
        );
        assert!(
            sim.log
                .iter()
                .all(|(_, d)| !matches!(d, Decision::Advance { .. })),
            "{statistic:?}: never left the canary: {:?}",
            sim.log
        );
        let reason = sim.state.reason.clone().unwrap_or_default();
        assert!(reason.contains("Drift"), "{reason}");
        assert_eq!(sim.on("2.0.0"), 0, "every device returned");
    }
}

#[test]
fn the_same_score_distribution_passes_the_drift_gate() {
    for statistic in [DriftStatistic::Psi, DriftStatistic::Ks] {
        let mut sim = drift_sim(0.60, statistic, 500);
        sim.run_until_settled(100);
        assert_eq!(
            sim.state.phase,
            Phase::Completed,
            "{statistic:?}: {:?}",
            sim.log
        );
        assert_eq!(sim.on("2.0.0"), 2_000);
    }
}

#[test]
fn a_drift_gate_with_thin_data_waits_instead_of_deciding() {
    // The canary serves about 100 devices × 20 scores a tick: a million values take far more
    // than these ticks, so the gate waits whatever the shift.
    let mut sim = drift_sim(0.95, DriftStatistic::Psi, 1_000_000);
    for _ in 0..30 {
        sim.tick();
    }
    assert_eq!(sim.state.phase, Phase::Running);
    assert_eq!(sim.state.in_force, 1, "still the canary: {:?}", sim.log);
    let report = gates(&sim.plan, &sim.state, &sim.devices, sim.now);
    assert_eq!(report[0].verdict, Verdict::Waiting);
    assert_eq!(report[0].value, None);
    assert!(
        report[0].samples > 1000,
        "values counted: {}",
        report[0].samples
    );
    // A device reporting no scores at all (an agent before protocol 6) also leaves it waiting.
    let mut silent = drift_sim(0.95, DriftStatistic::Psi, 10);
    silent.scores.clear();
    for _ in 0..10 {
        silent.tick();
    }
    assert_eq!(silent.state.in_force, 1);
    assert_eq!(
        gates(&silent.plan, &silent.state, &silent.devices, silent.now)[0].verdict,
        Verdict::Waiting
    );
}

#[test]
fn a_download_limit_moves_the_waves_devices_a_few_at_a_time_and_still_completes() {
    let mut limited = plan("2.0.0");
    limited.max_downloading = Some(25);
    let mut sim = Sim::new(1000, &[("1.0.0", 10, 40), ("2.0.0", 10, 40)], limited);
    let mut most_moved = 0;
    let mut most_slots = 0;
    for _ in 0..400 {
        if sim.state.phase.is_terminal() {
            break;
        }
        let before = sim.on("2.0.0");
        sim.tick();
        most_moved = most_moved.max(sim.on("2.0.0").saturating_sub(before));
        most_slots = most_slots.max(sim.state.downloading.len());
    }
    sim.tick();
    assert_eq!(sim.state.phase, Phase::Completed, "{:?}", sim.log);
    assert_eq!(sim.on("2.0.0"), 1000);
    assert!(most_slots <= 25, "{most_slots} slots at once");
    assert!(most_moved <= 25, "{most_moved} devices moved in one tick");
    assert!(most_moved >= 20, "the slots were used: {most_moved}");
    // Without the limit, the 50 % wave moves hundreds at once.
    let mut free = Sim::new(1000, &[("1.0.0", 10, 40), ("2.0.0", 10, 40)], plan("2.0.0"));
    let mut most_free = 0;
    for _ in 0..400 {
        if free.state.phase.is_terminal() {
            break;
        }
        let before = free.on("2.0.0");
        free.tick();
        most_free = most_free.max(free.on("2.0.0").saturating_sub(before));
    }
    assert!(most_free > 100, "{most_free}");
}

#[test]
fn a_device_already_on_the_target_is_never_sent_back_for_want_of_a_slot() {
    let mut limited = one_wave("2.0.0");
    limited.max_downloading = Some(1);
    let state = RolloutState::start(&limited, 0);
    let mut on_target = Sim::device(3, "2.0.0");
    on_target.previous = Some(v("1.0.0"));
    assert_eq!(
        desired(&limited, &state, &on_target),
        Desired::Run(v("2.0.0"))
    );
    // One without a slot keeps what it runs (the alias's version) until it gets one.
    let waiting = Sim::device(4, "1.0.0");
    assert_eq!(desired(&limited, &state, &waiting), Desired::Untouched);
    let mut zero = one_wave("2.0.0");
    zero.max_downloading = Some(0);
    assert_eq!(zero.validate(), Err(PlanError::NoDownloads));
}

#[test]
fn a_wave_bakes_from_its_last_devices_switch_not_from_when_it_came_into_force() {
    let mut p = one_wave("2.0.0");
    p.waves[0].min_bake_secs = 3600;
    p.waves[0].gates.clear();
    let state = RolloutState::start(&p, 0);
    let mut devices = seven(|_| {});
    for d in &mut devices {
        d.current = Some(v("2.0.0"));
        d.switched_at = Some(100);
    }
    // One device waited for its window and switched at 5000.
    devices[6].switched_at = Some(5000);
    assert!(
        evaluate(&p, &state, &devices, 3700).decisions.is_empty(),
        "still baking"
    );
    assert!(evaluate(&p, &state, &devices, 8599).decisions.is_empty());
    assert_eq!(
        evaluate(&p, &state, &devices, 8600).decisions,
        vec![Decision::Complete]
    );
}
