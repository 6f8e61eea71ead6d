//! Peak memory of a large update on real processes: one coordinator and one agent on
//! loopback, an artifact of `--gib N` GiB (default 2) installed whole, then a second version
//! with a few hundred KiB changed in 16 places installed as deltas. Prints each process's
//! peak RSS (`VmHWM`) for each phase; the processes are restarted between phases so each peak
//! is that phase's alone. The budget: agent ≤ 64 MiB on 2 GiB, coordinator bounded
//! by the window, not the file. Not a test: nothing here asserts.
//!
//! `cargo run --release -p ferry-tests --bin ferry-memory-bench -- --gib 2`; with
//! `FERRY_AGENT_BIN=$PWD/target/device/ferry-agent` to measure the agent as shipped.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_tests::procfs::status_kib;
use ferry_tests::{Fleet, model_bytes};

const GIB: usize = 1024 * 1024 * 1024;
const PATIENCE: Duration = Duration::from_secs(3600);

/// Peak memory (VmHWM) of the coordinator and an agent while a large artifact installs whole
/// and then as deltas. Prints a table; asserts nothing.
#[derive(clap::Parser)]
#[command(name = "ferry-memory-bench")]
struct Args {
    /// Size of the artifact, in GiB.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    gib: u64,
    #[command(flatten)]
    build: ferry_tests::BuildFlag,
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    args.build.apply();
    let gib = usize::try_from(args.gib)?;
    let size = gib * GIB;
    let v1 = model_bytes(1, size, true);
    let mut v2 = v1.clone();
    for i in 0..16 {
        let at = size / 17 * (i + 1);
        for b in &mut v2[at..at + 256 * 1024] {
            *b = b.wrapping_add(5) % 16;
        }
    }
    let mut fleet = Fleet::start(1, None)?;
    let mut rows = Vec::new();

    let start = Instant::now();
    fleet.publish("1.0.0", &v1)?;
    let publish_v1 = start.elapsed();
    drop(v1);
    // Restarted so its peak reflects what follows, not the upload.
    fleet.coordinator.restart()?;
    let start = Instant::now();
    fleet.set_prod("1.0.0", "memory bench")?;
    fleet.wait_all_on("1.0.0", PATIENCE)?;
    rows.push((
        "install whole (every chunk fetched)",
        start.elapsed(),
        peaks(&fleet)?,
    ));

    fleet.publish("2.0.0", &v2)?;
    // Restarted so its peak reflects what follows, not the upload.
    fleet.coordinator.restart()?;
    fleet.agents[0].kill();
    fleet.agents[0].start()?;
    let start = Instant::now();
    fleet.set_prod("2.0.0", "memory bench")?;
    fleet.wait_all_on("2.0.0", PATIENCE)?;
    rows.push((
        "update as deltas (16 edits)",
        start.elapsed(),
        peaks(&fleet)?,
    ));
    let transfer = fleet.agents[0].transfer_for("2.0.0")?;

    println!(
        "artifact {gib} GiB; publishing it took {:.1} s",
        publish_v1.as_secs_f64()
    );
    println!();
    println!("| phase | alias set → confirmed | agent peak RSS | coordinator peak RSS |");
    println!("|---|---:|---:|---:|");
    for (phase, took, (agent, coordinator)) in rows {
        println!(
            "| {phase} | {:.1} s | {:.1} MiB | {:.1} MiB |",
            took.as_secs_f64(),
            agent as f64 / 1024.0,
            coordinator as f64 / 1024.0
        );
    }
    println!();
    println!(
        "update as deltas: {} of {} chunks fetched, {} bytes on the wire, {} bytes reused locally, encodings {:?}",
        transfer.chunks_fetched,
        transfer.chunks_total,
        transfer.bytes_on_wire,
        transfer.bytes_reused_locally,
        transfer.encodings
    );
    println!();
    ferry_tests::print_stages(&transfer.stages, transfer.duration_ms);
    Ok(())
}

/// `(agent VmHWM, coordinator VmHWM)` in KiB.
fn peaks(fleet: &Fleet) -> Result<(u64, u64)> {
    let agent = fleet.agents[0].pid().context("agent not running")?;
    let coordinator = fleet.coordinator.pid().context("coordinator not running")?;
    Ok((
        status_kib(agent, "VmHWM")?,
        status_kib(coordinator, "VmHWM")?,
    ))
}
