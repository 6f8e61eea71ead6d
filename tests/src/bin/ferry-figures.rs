//! Measures the figures issue #2 asks for, on real processes, and prints them as a table:
//! local rollback time, agent idle RSS, agent binary size, and the time from `alias set` until
//! three agents run the new version. Run it with `cargo run --release -p ferry-tests --bin
//! ferry-figures`; to measure the agent as shipped, build it with `cargo build --profile device
//! -p ferry-agent` and pass `FERRY_AGENT_BIN=$PWD/target/device/ferry-agent`. Not a test:
//! nothing here asserts on time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_tests::procfs::{rss_by_mapping, status_kib};
use ferry_tests::{Binaries, Fleet, model_bytes};

/// Issue 2's figures on real processes: local rollback time, agent idle RSS and binary size,
/// and the time from `alias set` until three agents run the new version. Prints a table;
/// asserts nothing. FERRY_AGENT_BIN measures another agent binary (e.g. the device build).
#[derive(clap::Parser)]
#[command(name = "ferry-figures")]
struct Args {
    #[command(flatten)]
    build: ferry_tests::BuildFlag,
}

fn main() -> Result<()> {
    let Args { build } = clap::Parser::parse();
    build.apply();
    let rounds = 10;
    let mut fleet = Fleet::start(3, None)?;
    // One binary per agent, as on devices, so each agent's resident code is its own.
    for agent in &mut fleet.agents {
        agent.kill();
        agent.use_own_binary()?;
        agent.start()?;
    }
    let size = 4 * 1024 * 1024;
    fleet.publish("1.0.0", &model_bytes(1, size, true))?;
    fleet.set_prod("1.0.0", "figures")?;
    fleet.wait_all_on("1.0.0", Duration::from_secs(60))?;

    let mut alias_to_fleet = Vec::new();
    for round in 0..rounds {
        let version = format!("1.0.{}", round + 1);
        fleet.publish(&version, &model_bytes(100 + round, size, true))?;
        let start = Instant::now();
        fleet.set_prod(&version, "figures")?;
        fleet.wait_all_on(&version, Duration::from_secs(60))?;
        alias_to_fleet.push(start.elapsed());
    }

    let mut rollbacks = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        fleet.agents[0].rollback()?;
        rollbacks.push(start.elapsed());
    }
    // The in-process figure the CLI prints (the switch itself, without process start-up).
    let out = fleet.agents[0].rollback()?;
    let switch_ms = out
        .split(" in ")
        .nth(1)
        .and_then(|s| s.split(" ms").next())
        .unwrap_or("?")
        .to_owned();

    std::thread::sleep(Duration::from_secs(3)); // let the agents settle into idle
    let rss: Vec<(u64, u64, u64)> = fleet
        .agents
        .iter()
        .filter_map(|a| a.pid())
        .map(rss_kib)
        .collect::<Result<_>>()?;
    let bins = Binaries::get()?;
    let binary = std::fs::metadata(&bins.agent)?.len();

    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| alias set → all 3 agents on the new version (4 MiB artifact, {rounds} runs) | median {:.0} ms, max {:.0} ms |",
        ms(median(&mut alias_to_fleet)),
        ms(*alias_to_fleet.iter().max().context("runs")?)
    );
    println!(
        "| `ferry-agent rollback`, whole command incl. process start ({rounds} runs) | median {:.1} ms |",
        ms(median(&mut rollbacks))
    );
    println!("| local rollback switch itself (as the command reports it) | {switch_ms} ms |");
    let mib = |k: u64| k as f64 / 1024.0;
    let rss_cells: Vec<String> = rss
        .iter()
        .map(|(t, a, f)| format!("{:.1} MiB ({:.1} + {:.1})", mib(*t), mib(*a), mib(*f)))
        .collect();
    println!(
        "| agent idle RSS after the runs above, total (anonymous + file-backed), 3 agents | {} |",
        rss_cells.join(", ")
    );
    println!(
        "| agent binary ({}) | {:.2} MiB |",
        bins.agent.display(),
        binary as f64 / 1048576.0
    );
    if let Some(pid) = fleet.agents[0].pid() {
        println!();
        println!("Where the first agent's idle RSS lives (KiB):");
        for (mapping, kib) in rss_by_mapping(pid)? {
            println!("  {kib:>6}  {mapping}");
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `(VmRSS, RssAnon, RssFile)` in KiB.
fn rss_kib(pid: u32) -> Result<(u64, u64, u64)> {
    Ok((
        status_kib(pid, "VmRSS")?,
        status_kib(pid, "RssAnon")?,
        status_kib(pid, "RssFile")?,
    ))
}
