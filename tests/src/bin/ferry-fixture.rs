//! `ferry-fixture`: writes the stores one build leaves behind, for later builds to open.
//!
//! A coordinator and one agent run as real processes: a root ceremony, two releases with
//! lineage, `prod` moved by hand then by a completed rollout, a stage move, an API token, an
//! enrollment token, model metrics reported. Both stop cleanly (SIGTERM), and their stores
//! are copied to `OUT/coordinator` (the data directory) and `OUT/agent` (the state directory),
//! with `OUT/publisher.key` (and `.pub`), `OUT/root-1.tuf` and `OUT/expected.json` (what a later build
//! must find in them). Run through `scripts/make-fixtures.sh`, which names `OUT` after the
//! formats this build writes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_shared::rollout::Phase;
use ferry_tests::{AgentSpec, Fleet, MODEL, model_bytes, wait_until};

const T: Duration = Duration::from_secs(60);
const SIZE: usize = 256 * 1024;

const HELP: &str = "\
ferry-fixture: writes the stores this build leaves behind, for later builds to open

Usage: ferry-fixture --out DIR

  --out DIR   where to write (must not exist)
  --help      this text
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-fixture: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.as_slice() {
        [flag] if flag == "--help" || flag == "-h" => {
            print!("{HELP}");
            return Ok(());
        }
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => bail!("usage: ferry-fixture --out DIR (see --help)"),
    };
    if out.exists() {
        bail!(
            "{} exists already: fixtures are written once",
            out.display()
        );
    }
    let work = tempfile::Builder::new()
        .prefix("ferry-fixture-")
        .tempdir()?;
    let mut fleet = Fleet::start(0, Some(work.path()))?;
    let root = ferry_tests::scenarios::root_ceremony(&fleet)?;
    fleet.add_agent(AgentSpec {
        root_file: Some(root.clone()),
        ..AgentSpec::named("agent-1")
    })?;

    let meta = "code_commit = \"0123abcd\"\n[metrics]\naccuracy = 0.91\n\
                [dataset]\nid = \"images\"\nversion = \"2026-10\"\nhash = \"sha256:ab\"\n";
    fleet.publish_with_meta("1.0.0", &model_bytes(1, SIZE, true), Some(meta))?;
    fleet.set_prod("1.0.0", "fixture base")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.publish_with_meta("1.1.0", &model_bytes(2, SIZE, true), Some(meta))?;
    let plan = serde_json::json!({
        "id": "fixture-1.1.0", "model": MODEL, "version": "1.1.0", "reason": "fixture",
        "waves": [{"percent": 100, "bake_secs": 1, "gates": [
            {"kind": "InstallFailures", "threshold": 0.0, "min_samples": 1}]}],
    });
    let plan_file = fleet.dir.join("plan.json");
    std::fs::write(&plan_file, serde_json::to_vec(&plan)?)?;
    let c = &fleet.coordinator;
    c.ctl(&["rollout", "create", "--plan", &plan_file.to_string_lossy()])?;
    fleet.wait_rollout("fixture-1.1.0", Phase::Completed, T, |_| Ok(()))?;
    fleet.wait_all_on("1.1.0", T)?;
    c.ctl(&["stage", MODEL, "1.0.0", "staging", "--reason", "fixture"])?;
    c.ctl(&["tokens", "create", "fixture-ci", "--role", "publisher"])?;
    c.ctl(&["devices", "enroll-token", "--uses", "3"])?;
    fleet.serve_requests(50, |_| 2)?;
    let agent = &fleet.agents[0];
    wait_until("the agent wrote its metrics", T, || {
        Ok(agent
            .state_dir
            .join("models")
            .join(MODEL)
            .join("metrics.json")
            .exists())
    })?;
    let device = agent.status()?.device_id.context("no device id")?;
    let audit: serde_json::Value = c.ctl_json(&["audit", "--verify"])?;

    fleet.agents[0].terminate()?;
    fleet.coordinator.terminate()?;
    std::fs::create_dir_all(&out)?;
    copy_tree(&fleet.coordinator.data_dir, &out.join("coordinator"))?;
    copy_tree(&fleet.agents[0].state_dir, &out.join("agent"))?;
    std::fs::copy(&fleet.key, out.join("publisher.key"))?;
    std::fs::copy(
        format!("{}.pub", fleet.key.display()),
        out.join("publisher.key.pub"),
    )?;
    std::fs::copy(&root, out.join("root-1.tuf"))?;
    let expected = serde_json::json!({
        "model": MODEL,
        "prod": "1.1.0",
        "releases": ["1.0.0", "1.1.0"],
        "rollout": "fixture-1.1.0",
        "device": device,
        "agent_current": "1.1.0",
        "agent_previous": "1.0.0",
        "audit": audit,
    });
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_vec_pretty(&expected)?,
    )?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `cp -a`: links stay links (the agent's slots are relative symlinks).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!("cp -a {} {} failed", from.display(), to.display());
    }
    Ok(())
}
