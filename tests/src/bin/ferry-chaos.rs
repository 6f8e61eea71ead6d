//! `ferry-chaos`: crash loops on real processes, with a fixed seed. Not a test (it runs for
//! many minutes); `scripts/chaos.sh` runs it and its table goes into notes.
//!
//! * Agent kills: releases are moved in turn while an agent is killed with SIGKILL at a random
//!   moment (downloading, assembling, switching, in probation) and started again. After every
//!   kill the dead agent's `current` must be a complete version, byte for byte the one
//!   published; every so often the whole fleet must converge on `prod`.
//! * Coordinator kills: each round starts a rollout of the next (healthy) release, kills the
//!   coordinator at a random moment and starts it again. No healthy release may be rolled
//!   back, every rollout must still complete, and the audit trail must keep every entry seen
//!   before the kill (its head then verifies as an anchor afterwards).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_shared::rollout::Phase;
use ferry_tests::{AgentSpec, Fleet, MODEL, model_bytes};

const USAGE: &str = "\
ferry-chaos: kill -9 loops on real agents and coordinators; prints a table of what held.

Usage: ferry-chaos [--seed N] [--agent-kills N] [--coordinator-kills N] [--agents N]
                   [--mib N] [--keep DIR]

  --seed N               seed of every random choice (default 14)
  --agent-kills N        agent SIGKILLs (default 1000)
  --coordinator-kills N  coordinator SIGKILLs mid-rollout (default 100)
  --agents N             agents in the fleet (default 3)
  --mib N                size of each release in MiB (default 8)
  --keep DIR             keep the fleet's files in DIR (default: a temporary directory)
  --build                build the workspace's binaries first (default: run them as built)
  -h, --help             this text";

struct Options {
    seed: u64,
    agent_kills: u32,
    coordinator_kills: u32,
    agents: usize,
    mib: usize,
    keep: Option<std::path::PathBuf>,
    build: bool,
}

fn options() -> Result<Option<Options>> {
    let mut o = Options {
        seed: 14,
        agent_kills: 1000,
        coordinator_kills: 100,
        agents: 3,
        mib: 8,
        keep: None,
        build: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} takes a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seed" => o.seed = value()?.parse()?,
            "--agent-kills" => o.agent_kills = value()?.parse()?,
            "--coordinator-kills" => o.coordinator_kills = value()?.parse()?,
            "--agents" => o.agents = value()?.parse()?,
            "--mib" => o.mib = value()?.parse()?,
            "--keep" => o.keep = Some(value()?.into()),
            "--build" => o.build = true,
            other => bail!("unknown flag {other:?}\n\n{USAGE}"),
        }
    }
    if o.agents == 0 || o.mib == 0 {
        bail!("--agents and --mib must be at least 1");
    }
    Ok(Some(o))
}

/// xorshift64*: deterministic from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

#[derive(Default)]
struct Tally {
    agent_kills: u32,
    incomplete: u32,
    convergences: u32,
    coordinator_kills: u32,
    rollouts_completed: u32,
    healthy_rolled_back: u32,
    audit_lost: u32,
    problems: Vec<String>,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("ferry-chaos: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let Some(o) = options()? else {
        println!("{USAGE}");
        return Ok(true);
    };
    if !o.build {
        ferry_tests::Binaries::use_prebuilt();
    }
    let mut rng = Rng(o.seed.max(1));
    let mut fleet = Fleet::start(0, o.keep.as_deref())?;
    for i in 0..o.agents {
        fleet.add_agent(AgentSpec::named(&format!("agent-{i}")))?;
    }
    // Four releases moved in turn: each differs from the last in every chunk.
    let versions = ["1.0.0", "1.0.1", "1.0.2", "1.0.3"];
    let mut bytes = BTreeMap::new();
    for (i, v) in versions.iter().enumerate() {
        let b = model_bytes(i as u64 + 1, o.mib << 20, true);
        fleet.publish(v, &b)?;
        bytes.insert(v.to_string(), b);
    }
    fleet.set_prod(versions[0], "chaos: base")?;
    fleet.wait_all_on(versions[0], Duration::from_secs(120))?;

    let mut tally = Tally::default();
    let started = Instant::now();
    agent_kills(&mut fleet, &o, &mut rng, &versions, &bytes, &mut tally)?;
    let agent_time = started.elapsed();
    let started = Instant::now();
    coordinator_kills(&mut fleet, &o, &mut rng, &mut tally)?;
    let coordinator_time = started.elapsed();

    println!(
        "ferry-chaos, seed {}, {} agents, releases of {} MiB",
        o.seed, o.agents, o.mib
    );
    println!("| loop | kills | checks | failures | time |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| agent kill -9 (download, install, switch) | {} | {} convergences | {} devices without a complete verified version | {:.0} s |",
        tally.agent_kills,
        tally.convergences,
        tally.incomplete,
        agent_time.as_secs_f64()
    );
    println!(
        "| coordinator kill -9 mid-rollout | {} | {} rollouts completed | {} healthy releases rolled back, {} lost audit entries | {:.0} s |",
        tally.coordinator_kills,
        tally.rollouts_completed,
        tally.healthy_rolled_back,
        tally.audit_lost,
        coordinator_time.as_secs_f64()
    );
    for p in &tally.problems {
        println!("problem: {p}");
    }
    Ok(tally.problems.is_empty())
}

fn agent_kills(
    fleet: &mut Fleet,
    o: &Options,
    rng: &mut Rng,
    versions: &[&str],
    bytes: &BTreeMap<String, Vec<u8>>,
    tally: &mut Tally,
) -> Result<()> {
    let mut prod = 0;
    for kill in 0..o.agent_kills {
        // Every fourth kill, prod moves on, so the kills land in downloads and switches.
        if kill % 4 == 0 {
            prod = (prod + 1) % versions.len();
            fleet.set_prod(versions[prod], "chaos: next")?;
        }
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        let which = rng.below(o.agents as u64) as usize;
        let agent = &mut fleet.agents[which];
        agent.kill();
        tally.agent_kills += 1;
        match agent.current() {
            Some(v) => {
                let on_disk = agent.current_bytes("model.bin").unwrap_or_default();
                if bytes.get(&v.to_string()) != Some(&on_disk) {
                    tally.incomplete += 1;
                    tally.problems.push(format!(
                        "kill {kill}: {} runs {v} but its bytes differ",
                        agent.name
                    ));
                }
            }
            None => {
                tally.incomplete += 1;
                tally.problems.push(format!(
                    "kill {kill}: {} has no current version",
                    agent.name
                ));
            }
        }
        agent.start()?;
        if kill % 50 == 49 {
            match fleet.wait_all_on(versions[prod], Duration::from_secs(120)) {
                Ok(_) => tally.convergences += 1,
                Err(e) => tally
                    .problems
                    .push(format!("kill {kill}: the fleet did not converge: {e:#}")),
            }
        }
        if kill % 100 == 99 {
            eprintln!("ferry-chaos: {} agent kills", kill + 1);
        }
    }
    fleet.wait_all_on(versions[prod], Duration::from_secs(120))?;
    tally.convergences += 1;
    Ok(())
}

/// The audit head as `SEQ:HASH`.
fn audit_head(fleet: &Fleet) -> Result<String> {
    let verified: serde_json::Value = fleet.coordinator.ctl_json(&["audit", "--verify"])?;
    if !verified["broken"].is_null() {
        bail!("the audit trail is broken: {verified}");
    }
    Ok(format!(
        "{}:{}",
        verified["head"]["seq"],
        verified["head"]["hash"].as_str().context("no audit head")?
    ))
}

fn coordinator_kills(
    fleet: &mut Fleet,
    o: &Options,
    rng: &mut Rng,
    tally: &mut Tally,
) -> Result<()> {
    for round in 0..o.coordinator_kills {
        let version = format!("2.{round}.0");
        fleet.publish(
            &version,
            &model_bytes(1000 + u64::from(round), o.mib << 20, true),
        )?;
        let id = format!("chaos-{round}");
        let plan = serde_json::json!({
            "id": id, "model": MODEL, "version": version, "reason": "chaos",
            "waves": [{"percent": 50, "bake_secs": 1, "gates": [
                {"kind": "InstallFailures", "threshold": 0.5, "min_samples": 1},
                {"kind": "HealthFailures", "threshold": 0.5, "min_samples": 1}]},
                      {"percent": 100, "bake_secs": 1, "gates": [
                {"kind": "InstallFailures", "threshold": 0.5, "min_samples": 1},
                {"kind": "HealthFailures", "threshold": 0.5, "min_samples": 1}]}],
        });
        fleet.create_rollout(&plan)?;
        std::thread::sleep(Duration::from_millis(rng.below(3000)));
        let head = audit_head(fleet)?;
        fleet.coordinator.stop();
        tally.coordinator_kills += 1;
        fleet.coordinator.restart()?;
        let kept: serde_json::Value = fleet
            .coordinator
            .ctl_json(&["audit", "--verify", "--anchor", &head])?;
        if !kept["broken"].is_null() {
            tally.audit_lost += 1;
            tally
                .problems
                .push(format!("round {round}: audit head {head} lost: {kept}"));
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let view = fleet.rollout(&id)?;
            match view.phase {
                Phase::Completed => {
                    tally.rollouts_completed += 1;
                    break;
                }
                Phase::RolledBack => {
                    tally.healthy_rolled_back += 1;
                    tally.problems.push(format!(
                        "round {round}: {version} rolled back: {:?}",
                        view.reason
                    ));
                    break;
                }
                _ if Instant::now() > deadline => {
                    tally.problems.push(format!(
                        "round {round}: {id} still {:?} after 120 s: {:?}",
                        view.phase, view.notes
                    ));
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        if round % 10 == 9 {
            eprintln!("ferry-chaos: {} coordinator kills", round + 1);
        }
    }
    Ok(())
}
