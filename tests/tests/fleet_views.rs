//! The fleet views on real processes: the fragmentation report (versions per cohort, the
//! Gini–Simpson index, who is behind and why, history from periodic snapshots).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::{BehindReason, FragmentationReport};
use ferry_tests::{AgentSpec, Fleet, model_bytes, wait_until};

const T: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

/// Three agents (two CPU, one GPU) on 2.0.0, the GPU one rolled back by hand to 1.0.0.
fn fragmented_fleet() -> Result<Fleet> {
    let mut fleet = Fleet::start(2, None)?;
    fleet.add_agent(AgentSpec {
        accelerator: "gpu".into(),
        ..AgentSpec::named("agent-gpu")
    })?;
    fleet.publish("1.0.0", &model_bytes(1, MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.publish("2.0.0", &model_bytes(2, MIB, true))?;
    fleet.set_prod("2.0.0", "next")?;
    fleet.wait_all_on("2.0.0", T)?;
    fleet.agents[2].rollback()?;
    Ok(fleet)
}

#[test]
fn fragmentation_shows_versions_per_cohort_who_is_behind_and_why() -> Result<()> {
    let fleet = fragmented_fleet()?;
    let report = || -> Result<FragmentationReport> {
        fleet
            .coordinator
            .ctl_json(&["fleet", "fragmentation", "--by", "accelerator"])
    };
    wait_until("the hand rollback to be reported", T, || {
        Ok(report()?.models[0].overall.behind.len() == 1)
    })?;
    let r = report()?;
    let m = &r.models[0];
    let all = &m.overall;
    ensure!(all.devices == 3 && all.distinct_versions == 2, "{all:?}");
    // Two on 2.0.0, one on 1.0.0: 1 − (4 + 1)/9.
    ensure!((all.index - 4.0 / 9.0).abs() < 1e-9, "index {}", all.index);
    let behind = &all.behind[0];
    ensure!(
        behind.reason == BehindReason::Pinned
            && behind.versions_behind == 1
            && behind.running.as_ref().map(ToString::to_string).as_deref() == Some("1.0.0"),
        "{behind:?}"
    );
    let cohorts: Vec<(&str, usize, usize, f64)> = m
        .cohorts
        .iter()
        .map(|c| (c.cohort.as_str(), c.devices, c.behind.len(), c.index))
        .collect();
    ensure!(
        cohorts == [("cpu", 2, 0, 0.0), ("gpu", 1, 1, 0.0)],
        "{cohorts:?}"
    );

    // The coordinator keeps snapshots (every second here), and the table shows their trend.
    wait_until("two fragmentation snapshots", T, || {
        Ok(report()?.models[0].history.len() >= 2)
    })?;
    let text = fleet
        .coordinator
        .ctl(&["fleet", "fragmentation", "--by", "accelerator"])?;
    for want in ["index over 7 day(s)", "ON prod", "pinned", "gpu"] {
        ensure!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let widest = text
        .lines()
        .map(|l| l.chars().count())
        .max()
        .context("no output")?;
    ensure!(widest <= 80, "a line is {widest} columns wide:\n{text}");
    Ok(())
}
