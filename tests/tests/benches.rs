//! The bench and tool binaries of this crate: each answers `--help` with its usage and refuses
//! a flag it does not know, at once, without starting a run; and the fleet simulator runs to
//! the end on a small fleet.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

const BINARIES: [(&str, &str); 10] = [
    ("ferry-fleet-sim", env!("CARGO_BIN_EXE_ferry-fleet-sim")),
    (
        "ferry-transfer-bench",
        env!("CARGO_BIN_EXE_ferry-transfer-bench"),
    ),
    (
        "ferry-memory-bench",
        env!("CARGO_BIN_EXE_ferry-memory-bench"),
    ),
    ("ferry-figures", env!("CARGO_BIN_EXE_ferry-figures")),
    ("ferry-chaos", env!("CARGO_BIN_EXE_ferry-chaos")),
    ("ferry-fixture", env!("CARGO_BIN_EXE_ferry-fixture")),
    ("ferry-demo", env!("CARGO_BIN_EXE_ferry-demo")),
    (
        "ferry-throughput-bench",
        env!("CARGO_BIN_EXE_ferry-throughput-bench"),
    ),
    (
        "ferry-ratecap-bench",
        env!("CARGO_BIN_EXE_ferry-ratecap-bench"),
    ),
    (
        "ferry-bundle-bench",
        env!("CARGO_BIN_EXE_ferry-bundle-bench"),
    ),
];

/// Runs `binary args`, and fails if it has not exited within a few seconds (it started a run).
fn run_briefly(binary: &str, args: &[&str]) -> Result<Output> {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{binary} {args:?} was still running after 20 s: it started a run");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

/// Regression: `ferry-fleet-sim --help` started a full 10,000-device run, and the benches'
/// flag helper ignored anything it did not know (a misspelt `--agent 50000` ran the default).
#[test]
fn every_bench_binary_answers_help_and_refuses_unknown_flags() -> Result<()> {
    for (name, binary) in BINARIES {
        let help = run_briefly(binary, &["--help"])?;
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{name} --help: {help:?}");
        assert!(
            text.contains("Usage") || text.contains("usage"),
            "{name} --help prints no usage: {text}"
        );

        let wrong = run_briefly(binary, &["--no-such-flag", "1"])?;
        let text = String::from_utf8_lossy(&wrong.stderr);
        assert!(!wrong.status.success(), "{name} accepted an unknown flag");
        assert!(
            text.contains("--no-such-flag") || text.contains("usage"),
            "{name} does not say what was wrong: {text}"
        );
    }
    Ok(())
}

/// Regression: the simulator's failing canary device reported a download error, which the
/// coordinator rightly counts as a retry, not a failed install, since stragglers were taught
/// apart; its rollout never rolled back and every run ended in "the rollout never rolled
/// back".
#[test]
fn the_fleet_simulator_runs_to_the_end_on_a_small_fleet() -> Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-fleet-sim"))
        .args(["--agents", "60", "--build"])
        .stdin(Stdio::null())
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("automatic rollback"),
        "the table has the rollback row: {stdout}"
    );
    Ok(())
}
