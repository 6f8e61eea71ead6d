//! `ferry-demo`: a local fleet on the embedded defaults, start to finish, in well under a minute.
//!
//! A coordinator and four agents run as real processes on loopback, in `./demo-run`. The model
//! is a safetensors file of f32 weights; each version is fine-tuned from the one before (its
//! last layers' weights moved by up to 1 %), as retrained models are, and after every update
//! the demo prints what crossed the wire against the artifact's size. The demo publishes v1
//! and moves `prod` (every agent installs it), publishes v2 (every agent updates, as deltas,
//! and keeps v1 as previous), publishes a broken v3 (every agent's health check fails and the
//! agent rolls itself back), rolls one device back by hand, ships a fixed v3.0.1, and rolls
//! v3.1.0 out in two gated waves with an approval between them, printing `ferryctl fleet
//! status` after each step. It ends with the registry: lifecycle stages, the releases, a
//! garbage-collection dry run, and the audit trail with its hash chain verified.
//! Run: `cargo run -p ferry-tests --bin ferry-demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_shared::rollout::Phase;
use ferry_shared::wire::ErrorKind;
use ferry_tests::{Fleet, nudged, wait_until, weights};

const AGENTS: usize = 4;
/// Weights in the model: 16 MiB of f32.
const FLOATS: usize = 4 * 1024 * 1024;
/// The share of the weights a fine-tune moves (its last layers; the rest stays frozen).
const TUNED: f64 = 0.25;
const T: Duration = Duration::from_secs(60);

/// A local fleet on the embedded defaults, start to finish: a coordinator and four agents on
/// loopback, in ./demo-run, publishing, updating, rolling back and rolling out in gated waves.
#[derive(clap::Parser)]
#[command(name = "ferry-demo")]
struct Args {}

fn main() -> ExitCode {
    let Args {} = clap::Parser::parse();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-demo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn step(n: u32, text: &str) {
    println!();
    println!("━━ {n}. {text}");
}

fn show(fleet: &Fleet) -> Result<()> {
    println!("$ ferryctl fleet status");
    print!("{}", indent(&fleet.coordinator.ctl(&["fleet", "status"])?));
    Ok(())
}

/// `base` fine-tuned: the last [`TUNED`] of its weights moved by up to 1 % each, the rest
/// (the frozen layers) and the header as they were.
fn fine_tuned(base: &[u8], seed: u64) -> Vec<u8> {
    let moved = nudged(base, seed, 0.01);
    let header = base.get(..8).map_or(0, |b| {
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }) as usize;
    let data = base.len().saturating_sub(8 + header);
    // Frozen up to a weight's boundary.
    let frozen = 8 + header + ((data as f64 * (1.0 - TUNED)) as usize / 4 * 4);
    let mut out = base[..frozen].to_vec();
    out.extend_from_slice(&moved[frozen..]);
    out
}

/// `model` with the mark its health check looks for scratched out of its header: a model
/// that fails to load.
fn broken(model: &[u8]) -> Vec<u8> {
    let mut out = model.to_vec();
    let magic = ferry_tests::HEALTH_MAGIC;
    let head = out.len().min(4096);
    if let Some(at) = out[..head].windows(magic.len()).position(|w| w == magic) {
        out[at..at + magic.len()].fill(b'x');
    }
    out
}

/// What each agent's update to `version` moved, summed over the fleet and told per device:
/// bytes on the wire against the artifact's size, and how the chunks came.
fn transfer_summary(fleet: &Fleet, version: &str, size: usize) -> Result<String> {
    let mut wire = 0u64;
    let mut encodings = std::collections::BTreeMap::<String, u64>::new();
    let mut reused = 0u64;
    for agent in &fleet.agents {
        let t = agent.transfer_for(version)?;
        wire += t.bytes_on_wire;
        reused += t.bytes_reused_locally;
        for (encoding, n) in t.encodings {
            *encodings.entry(encoding).or_default() += u64::from(n);
        }
    }
    let agents = fleet.agents.len().max(1) as u64;
    let per_device = wire / agents;
    let saved = 100.0 * (1.0 - per_device as f64 / size.max(1) as f64);
    let how: Vec<String> = encodings
        .iter()
        .map(|(encoding, n)| format!("{} {}", n / agents, encoding_name(encoding)))
        .collect();
    Ok(format!(
        "  {version}: {} artifact, {} sent per device ({saved:.0} % saved); chunks per device: {}{}",
        mib(size as u64),
        mib(per_device),
        if how.is_empty() {
            "none sent".into()
        } else {
            how.join(", ")
        },
        if reused > 0 {
            format!(
                "; {} copied from versions already on the device",
                mib(reused / agents)
            )
        } else {
            String::new()
        },
    ))
}

/// An encoding as the summary names it.
fn encoding_name(encoding: &str) -> String {
    match encoding {
        "raw" => "whole".into(),
        "zstd" => "whole, compressed".into(),
        "tensors" => "as tensor deltas".into(),
        "zstd-ref" => "as zstd deltas".into(),
        other => format!("as {other} deltas"),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn run() -> Result<()> {
    let started = Instant::now();
    let dir = PathBuf::from("demo-run");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    println!(
        "Ferry local fleet demo: one coordinator, {AGENTS} agents, model `detector`, alias `prod`."
    );
    println!("Everything runs as real processes on loopback; files and logs stay in ./demo-run.");

    step(
        1,
        "Start the coordinator, hold the offline root ceremony, start agents trusting that root",
    );
    let mut fleet = Fleet::start(0, Some(&dir))?;
    let root = ferry_tests::scenarios::root_ceremony(&fleet)?;
    for i in 0..AGENTS {
        fleet.add_agent(ferry_tests::AgentSpec {
            root_file: Some(root.clone()),
            ..ferry_tests::AgentSpec::named(&format!("agent-{}", i + 1))
        })?;
    }
    println!(
        "  root metadata: {} (2 of 2 root keys signed; names the publisher key and the coordinator's snapshot key)",
        root.display()
    );
    let c = &fleet.coordinator;
    println!(
        "  coordinator: agents on quic://{}, admin API on http://{}",
        c.quic, c.http
    );
    println!(
        "  certificate fingerprint pinned by the agents: {}",
        c.fingerprint
    );
    println!(
        "  publisher key: {} (named by the root: the only key releases are accepted from)",
        fleet.key.display()
    );
    println!(
        "  agents: {} — each with a health check that test-loads the model",
        fleet
            .agents
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    step(2, "Publish detector 1.0.0 and point prod at it");
    let v1 = weights(1, FLOATS);
    print!("{}", indent(&fleet.publish("1.0.0", &v1)?));
    let t = Instant::now();
    print!("{}", indent(&fleet.set_prod("1.0.0", "first release")?));
    let took = fleet.wait_all_on("1.0.0", T)?;
    println!(
        "  every agent downloaded, verified, switched and health-checked 1.0.0 in {} ms",
        took.max(t.elapsed()).as_millis()
    );
    println!("{}", transfer_summary(&fleet, "1.0.0", v1.len())?);
    show(&fleet)?;

    step(
        3,
        "Publish 2.0.0 (fine-tuned from 1.0.0: its last layers retrained) and move prod",
    );
    let v2 = fine_tuned(&v1, 2);
    print!("{}", indent(&fleet.publish("2.0.0", &v2)?));
    print!(
        "{}",
        indent(&fleet.set_prod("2.0.0", "retrained on new data")?)
    );
    let took = fleet.wait_all_on("2.0.0", T)?;
    println!(
        "  all agents on 2.0.0 after {} ms; 1.0.0 stays on each device as previous",
        took.as_millis()
    );
    println!("{}", transfer_summary(&fleet, "2.0.0", v2.len())?);
    show(&fleet)?;

    step(
        4,
        "Publish a broken 3.0.0 whose model fails to load, and move prod",
    );
    print!(
        "{}",
        indent(&fleet.publish("3.0.0", &broken(&fine_tuned(&v2, 3)))?)
    );
    print!(
        "{}",
        indent(&fleet.set_prod("3.0.0", "this one is broken")?)
    );
    wait_until("every agent to roll 3.0.0 back", T, || {
        let status = fleet.coordinator.fleet_status()?;
        let failed = status
            .models
            .iter()
            .flat_map(|m| &m.errors)
            .filter(|e| {
                e.error.kind == ErrorKind::HealthCheck && e.error.version.to_string() == "3.0.0"
            })
            .count();
        Ok(failed == AGENTS
            && fleet
                .agents
                .iter()
                .all(|a| a.current().is_some_and(|v| v.to_string() == "2.0.0")))
    })?;
    println!(
        "  every agent switched to 3.0.0, saw its health check fail, switched back to 2.0.0 on its own,"
    );
    println!("  and now holds 3.0.0 back so it does not retry it in a loop");
    show(&fleet)?;

    step(
        5,
        "Roll agent-1 back by hand, on the device: ferry-agent rollback",
    );
    let out = fleet.agents[0].rollback()?;
    print!("{}", indent(&format!("$ ferry-agent rollback\n{out}")));
    wait_until("the coordinator to hear of the rollback", T, || {
        let devices = fleet.coordinator.devices()?;
        Ok(devices.iter().any(|d| {
            d.models
                .iter()
                .any(|m| m.active.as_ref().is_some_and(|v| v.to_string() == "1.0.0"))
        }))
    })?;
    println!("$ ferry-agent status   (on agent-1)");
    let status =
        ferry_agent::status::gather(&ferry_agent::config::Config::load(&fleet.agents[0].config)?)?;
    let m = &status.models[0];
    println!(
        "  current {}, previous {}",
        or_dash(&m.current),
        or_dash(&m.previous)
    );
    for h in &m.holds {
        println!("  holding {} back: {}", h.version, h.reason);
    }
    show(&fleet)?;

    step(6, "Ship the fix: publish 3.0.1 and move prod");
    let v301 = fine_tuned(&v2, 31);
    print!("{}", indent(&fleet.publish("3.0.1", &v301)?));
    print!(
        "{}",
        indent(&fleet.set_prod("3.0.1", "fixed model loading")?)
    );
    let took = fleet.wait_all_on("3.0.1", T)?;
    println!(
        "  all agents, agent-1 included, on 3.0.1 after {} ms",
        took.as_millis()
    );
    println!("{}", transfer_summary(&fleet, "3.0.1", v301.len())?);
    show(&fleet)?;

    step(
        7,
        "A staged rollout of 3.1.0: half the fleet runs it in shadow, then serves it, gated on health and error rate; then approval",
    );
    let v310 = fine_tuned(&v301, 310);
    fleet.publish("3.1.0", &v310)?;
    let plan = fleet.dir.join("rollout-3.1.0.json");
    let gates = serde_json::json!([
        {"kind": "InstallFailures", "threshold": 0.0, "min_samples": 1},
        {"kind": "HealthFailures", "threshold": 0.0, "min_samples": 1},
        {"kind": "ErrorRateIncrease", "threshold": 0.02, "min_samples": 200},
    ]);
    std::fs::write(
        &plan,
        serde_json::to_vec_pretty(&serde_json::json!({
            "model": "detector", "version": "3.1.0", "reason": "faster tokenizer",
            "waves": [
                {"percent": 50, "bake_secs": 2, "shadow": true, "gates": gates},
                {"percent": 50, "bake_secs": 2, "gates": gates},
                {"percent": 100, "bake_secs": 1, "approval": true, "gates": gates},
            ],
        }))?,
    )?;
    println!("$ ferryctl rollout create --plan rollout-3.1.0.json");
    print!(
        "{}",
        indent(&fleet.coordinator.ctl(&[
            "rollout",
            "create",
            "--plan",
            &plan.to_string_lossy()
        ])?)
    );
    // The model server on each device reports its requests to the agent's metrics socket;
    // here the demo plays it: 1 % errors on every version.
    let id = "detector-3.1.0";
    wait_until("a device to stage 3.1.0 as its shadow candidate", T, || {
        Ok(fleet.agents.iter().any(|a| a.candidate().is_some()))
    })?;
    for agent in fleet.agents.iter().filter(|a| a.candidate().is_some()) {
        println!(
            "  {}: serving {}, running {} in shadow on the same requests (models/detector/candidate)",
            agent.name,
            or_dash(&agent.current()),
            or_dash(&agent.candidate())
        );
    }
    fleet.wait_rollout(id, Phase::AwaitingApproval, T, one_percent_errors)?;
    println!("$ ferryctl rollout status {id}");
    print!(
        "{}",
        indent(&fleet.coordinator.ctl(&["rollout", "status", id])?)
    );
    println!("$ ferryctl rollout approve {id}");
    fleet
        .coordinator
        .ctl(&["rollout", "approve", id, "--reason", "canary is healthy"])?;
    let took = fleet.wait_all_on("3.1.0", T)?;
    println!(
        "  the last wave is in force: every agent on 3.1.0 after {} ms",
        took.as_millis()
    );
    println!("{}", transfer_summary(&fleet, "3.1.0", v310.len())?);
    fleet.wait_rollout(id, Phase::Completed, T, one_percent_errors)?;
    println!("  its gates passed again after the bake: the rollout completed and moved prod");
    show(&fleet)?;

    step(8, "The registry: lifecycle stages and what was published");
    let c = &fleet.coordinator;
    for (version, stage) in [
        ("3.1.0", "staging"),
        ("3.1.0", "production"),
        ("1.0.0", "archived"),
    ] {
        println!("$ ferryctl stage detector {version} {stage}");
        print!(
            "{}",
            indent(&c.ctl(&["stage", "detector", version, stage])?)
        );
    }
    println!("$ ferryctl releases list");
    print!("{}", indent(&c.ctl(&["releases", "list"])?));
    println!("$ ferryctl gc   (a dry run: nothing is freed without a retention policy)");
    print!("{}", indent(&c.ctl(&["gc"])?));

    step(9, "The audit trail of what happened, and its hash chain");
    println!("$ ferryctl audit --action alias --last 6");
    print!(
        "{}",
        indent(&c.ctl(&["audit", "--action", "alias", "--last", "6"])?)
    );
    println!("$ ferryctl audit --verify");
    print!("{}", indent(&c.ctl(&["audit", "--verify"])?));

    for agent in &mut fleet.agents {
        agent.kill();
    }
    fleet.coordinator.stop();
    println!();
    println!(
        "Demo finished in {:.1} s. Logs, state directories and the coordinator's data are in ./demo-run.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The demo's model server: 100 requests per agent per round, 1 % failing.
fn one_percent_errors(fleet: &Fleet) -> Result<()> {
    fleet.serve_requests(100, |_| 1)
}

fn or_dash(v: &Option<ferry_shared::Version>) -> String {
    v.as_ref().map_or_else(|| "-".into(), ToString::to_string)
}
