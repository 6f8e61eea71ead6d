//! How closely download caps hold, on real processes over QUIC on loopback, each beside the
//! uncapped anchor measured in the same run:
//! - **device cap** (`[download] max_rate`): one agent per cap installs an artifact of
//!   random bytes (nothing to compress, nothing to reuse); its rate is the bytes it received
//!   over its staging time, from its own records;
//! - **serving cap** (the coordinator's `serve_max_rate`): two agents install the same
//!   artifact at once from a capped coordinator; their rate together is the bytes both
//!   received over the time from the alias move to the last install.
//!
//! Not a test: nothing here asserts. `cargo run --release -p ferry-tests --bin
//! ferry-ratecap-bench -- --mib 64 --caps 2,8,32`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_shared::testutil::noise;
use ferry_tests::{AgentSpec, Fleet, HEALTH_MAGIC};

const MIB: usize = 1024 * 1024;
const PATIENCE: Duration = Duration::from_secs(3600);

/// Download caps (per device and per coordinator) against what transfers achieve.
/// Prints a table; asserts nothing.
#[derive(clap::Parser)]
#[command(name = "ferry-ratecap-bench")]
struct Args {
    /// Size of the artifact, in MiB.
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u64).range(4..=4096))]
    mib: u64,
    /// Caps to measure, in MiB/s.
    #[arg(long, value_delimiter = ',', default_values_t = [2u32, 8, 32])]
    caps: Vec<u32>,
    #[command(flatten)]
    build: ferry_tests::BuildFlag,
}

/// An artifact the demo agents' health check accepts, of new random bytes for `seed`.
fn artifact(size: usize, seed: u64) -> Vec<u8> {
    let mut bytes = HEALTH_MAGIC.to_vec();
    bytes.extend(noise(seed, size - HEALTH_MAGIC.len()));
    bytes
}

/// Installs a fresh artifact on one agent capped at `cap` MiB/s (`None`: uncapped), alone
/// with its own coordinator; the agent's achieved rate in MiB/s and its staging time.
fn device_round(size: usize, cap: Option<u32>, seed: u64) -> Result<(f64, Duration)> {
    let mut fleet = Fleet::start(0, None)?;
    let extra = match cap {
        Some(c) => format!("[download]\nmax_rate = \"{c} MiB/s\"\n"),
        None => String::new(),
    };
    let index = fleet.add_agent(AgentSpec {
        extra,
        ..AgentSpec::named("device")
    })?;
    let version = format!("1.0.{seed}");
    fleet.publish(&version, &artifact(size, seed))?;
    fleet.set_prod(&version, "rate cap bench")?;
    let agent = &fleet.agents[index];
    let transfer = agent.transfer_for(&version)?;
    let staging = Duration::from_millis(transfer.duration_ms.max(1));
    Ok((
        transfer.bytes_on_wire as f64 / MIB as f64 / staging.as_secs_f64(),
        staging,
    ))
}

/// Two agents install one artifact at once from a coordinator serving at most `cap` MiB/s;
/// their rate together in MiB/s.
fn serving_round(size: usize, cap: Option<u32>) -> Result<f64> {
    let config = cap.map(|c| format!("serve_max_rate = \"{c} MiB/s\"\n"));
    let fleet = Fleet::start_configured(2, None, config.as_deref())?;
    fleet.publish("1.0.0", &artifact(size, 99))?;
    let started = Instant::now();
    fleet.set_prod("1.0.0", "serving cap bench")?;
    fleet.wait_all_on("1.0.0", PATIENCE)?;
    let took = started.elapsed();
    let mut bytes = 0u64;
    for agent in &fleet.agents {
        bytes += agent.transfer_for("1.0.0")?.bytes_on_wire;
    }
    Ok(bytes as f64 / MIB as f64 / took.as_secs_f64())
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    args.build.apply();
    let size = usize::try_from(args.mib)? * MIB;
    println!("artifact: {} MiB of random bytes per install", args.mib);
    println!();
    println!("| device cap (`[download] max_rate`) | agent's rate | staging time | off the cap |");
    println!("|---|---:|---:|---:|");
    let (anchor, took) = device_round(size, None, 1)?;
    println!(
        "| none (anchor) | {anchor:.1} MiB/s | {:.2} s | |",
        took.as_secs_f64()
    );
    for (i, cap) in args.caps.iter().enumerate() {
        let (rate, took) = device_round(size, Some(*cap), 2 + i as u64)
            .with_context(|| format!("the {cap} MiB/s round"))?;
        println!(
            "| {cap} MiB/s | {rate:.2} MiB/s | {:.2} s | {:+.1} % |",
            took.as_secs_f64(),
            (rate / f64::from(*cap) - 1.0) * 100.0
        );
    }
    println!();
    println!(
        "| coordinator cap (`serve_max_rate`), 2 agents at once | their rate together | off the cap |"
    );
    println!("|---|---:|---:|");
    let anchor = serving_round(size, None)?;
    println!("| none (anchor) | {anchor:.1} MiB/s | |");
    for cap in &args.caps {
        let rate =
            serving_round(size, Some(*cap)).with_context(|| format!("serving at {cap} MiB/s"))?;
        println!(
            "| {cap} MiB/s | {rate:.2} MiB/s | {:+.1} % |",
            (rate / f64::from(*cap) - 1.0) * 100.0
        );
    }
    Ok(())
}
