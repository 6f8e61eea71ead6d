//! Disk space across the fleet, on real processes: agents tell their free space (protocol 7),
//! `rollout create --check` lists the devices that could not take a release before anything
//! starts, a device that cannot fit a release refuses it with "need N, have M" and stays on
//! what it runs, fragmentation names the disk as the reason, and `/metrics` and `ferry-agent
//! status` show the space. The small disk is a tmpfs (root only; elsewhere: skipped).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::{BehindReason, FragmentationReport, RolloutCheck};
use ferry_shared::wire::ErrorKind;
use ferry_tests::small_disk::SmallDisk;
use ferry_tests::{AgentSpec, Fleet, MODEL, model_bytes, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

#[test]
fn devices_that_cannot_fit_a_release_are_named_before_and_after_it_ships() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    let tight_state = fleet.dir.join("agents/tight/state");
    let Some(_disk) = SmallDisk::mount(&tight_state, 24)? else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return Ok(());
    };
    fleet.add_agent(AgentSpec::named("roomy"))?;
    fleet.add_agent(AgentSpec::named("tight"))?;
    fleet.publish("1.0.0", &model_bytes(1, 4 * MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", WAIT)?;
    let c = &fleet.coordinator;
    // Each agent told its disk, what it holds counting the version it installed.
    wait_until("both devices to tell their disk space", WAIT, || {
        Ok(c.devices()?.iter().all(|d| {
            d.conditions
                .as_ref()
                .is_some_and(|(c, _)| c.disk.is_some_and(|d| d.held >= 4 * MIB as u64))
        }))
    })?;
    let devices = c.devices()?;
    let tight = devices
        .iter()
        .find(|d| d.labels.get("name").map(String::as_str) == Some("tight"))
        .context("tight not listed")?;
    let disk = tight
        .conditions
        .as_ref()
        .and_then(|(c, _)| c.disk)
        .context("no disk")?;
    ensure!(disk.total == 24 * MIB as u64, "{disk:?}");

    // 2.0.0 is larger than the tight disk: the check names it, and starts nothing.
    fleet.publish("2.0.0", &model_bytes(2, 30 * MIB, true))?;
    let check = [
        "rollout", "create", MODEL, "2.0.0", "--waves", "50,100", "--check",
    ];
    let out = c.ctl_output(&check)?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.code() == Some(9),
        "exit {:?}: {text}",
        out.status.code()
    );
    ensure!(
        text.contains("1 device(s) could not take 2.0.0: disk 1")
            && text.contains("tight")
            && text.contains("disk: need 30."),
        "{text}"
    );
    let mut as_json: Vec<&str> = check.to_vec();
    as_json.push("--json");
    let out = c.ctl_output(&as_json)?;
    let checked: RolloutCheck = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
    ensure!(checked.devices == 2 && checked.waves.last().map(|w| w.devices) == Some(2));
    ensure!(checked.misfit_counts.get("disk") == Some(&1), "{checked:?}");
    ensure!(checked.misfits[0].name.as_deref() == Some("tight"));
    ensure!(
        checked.misfits[0].detail.ends_with("free (of 24.0 MiB)"),
        "{:?}",
        checked.misfits[0]
    );
    ensure!(
        c.ctl(&["rollout", "status"])?.trim().lines().count() <= 1,
        "a rollout started"
    );
    // A release that fits everyone passes the check.
    let ok = c.ctl(&["rollout", "create", MODEL, "1.0.0", "--check"])?;
    ensure!(
        ok.contains("every device it reaches can take 1.0.0"),
        "{ok}"
    );

    // Shipped anyway: the tight device refuses before fetching a byte, with what it needs,
    // and keeps running 1.0.0; the roomy one moves.
    fleet.set_prod("2.0.0", "ship it")?;
    let [roomy, tight_agent] = [0, 1].map(|i| &fleet.agents[i]);
    wait_until("the roomy device to run 2.0.0", WAIT, || {
        Ok(roomy.current().map(|v| v.to_string()).as_deref() == Some("2.0.0"))
    })?;
    wait_until("the tight device to refuse 2.0.0", WAIT, || {
        Ok(tight_agent.status()?.models[0]
            .last_error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Disk))
    })?;
    let status = tight_agent.status()?;
    let error = status.models[0].last_error.clone().context("no error")?;
    ensure!(
        error.message.contains("need 30.") && error.message.contains("free in"),
        "{error:?}"
    );
    ensure!(tight_agent.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"));
    ensure!(status.disk.is_some_and(|d| d.total == 24 * MIB as u64));
    wait_until("fragmentation to name the disk", WAIT, || {
        let report: FragmentationReport = c.ctl_json(&["fleet", "fragmentation"])?;
        Ok(report
            .models
            .iter()
            .flat_map(|m| &m.overall.behind)
            .any(|b| {
                b.reason == BehindReason::DiskFull
                    && b.detail.as_deref().is_some_and(|d| d.contains("need 30."))
            }))
    })?;
    let metrics = c.get("/metrics", "viewer")?.body;
    ensure!(
        metrics.contains("ferry_device_disk_free_bytes_count 2")
            && metrics.contains("ferry_devices_behind{model=\"detector\",reason=\"disk-full\"} 1"),
        "{metrics}"
    );
    Ok(())
}
