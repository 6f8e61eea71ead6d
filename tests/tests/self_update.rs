//! The agent updates itself: releases of the `ferry-agent` model carry the agent binary. A
//! good one takes over in the same process and confirms itself once it has connected,
//! reported and passed the device's health check; a bad one (a binary that exits at start)
//! is undone by the next start, which brings the previous agent back, holds the bad version
//! and reports the rollback.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_tests::{AgentSpec, Fleet, Hopeless, model_bytes, wait_until};

const T: Duration = Duration::from_secs(90);
const AGENT_MODEL: &str = "ferry-agent";

/// Publishes `file` as `ferry-agent VERSION` and points `prod` at it.
fn ship_agent(fleet: &Fleet, version: &str, file: &Path) -> Result<()> {
    let key = fleet.key.to_string_lossy().into_owned();
    let file = file.to_string_lossy().into_owned();
    fleet.coordinator.ctl(&[
        "publish",
        AGENT_MODEL,
        version,
        &file,
        "--key",
        &key,
        "--file-name",
        "ferry-agent",
    ])?;
    fleet.coordinator.ctl(&[
        "alias",
        "set",
        AGENT_MODEL,
        "prod",
        version,
        "--reason",
        "agent update",
    ])?;
    Ok(())
}

/// The binary process `pid` runs.
fn exe_of(pid: u32) -> Result<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).with_context(|| format!("process {pid}"))
}

#[test]
fn a_good_agent_update_takes_over_and_a_bad_one_heals_back_to_the_agent_before_it() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    // What the agent tells systemd: a handover must not look like the service stopping.
    let notify_path = fleet.dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path)?;
    // Read as they come: the socket queues only a few datagrams (net.unix.max_dgram_qlen),
    // and the agent drops what does not fit.
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    std::thread::spawn({
        let told = told.clone();
        move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = notify.recv(&mut buf) {
                if let Ok(mut told) = told.lock() {
                    told.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        }
    });
    fleet.add_agent_with_env(
        AgentSpec {
            extra: format!("[self_update]\nmodel = \"{AGENT_MODEL}\"\nprove_within_secs = 30\n"),
            ..AgentSpec::named("self-updating")
        },
        &[("NOTIFY_SOCKET", &notify_path.to_string_lossy())],
    )?;
    fleet.ship("1.0.0", &model_bytes(1, 64 * 1024, true), T)?;
    let state = fleet.agents[0].state_dir.clone();
    let installed = |version: &str| {
        state
            .join("versions")
            .join(AGENT_MODEL)
            .join(version)
            .join("ferry-agent")
    };
    let pid = fleet.agents[0].pid().context("the agent runs")?;
    let packaged = exe_of(pid)?;

    // A good release: this very agent, as version 9.0.0.
    let good = fleet.dir.join("ferry-agent-9.0.0");
    std::fs::copy(&packaged, &good)?;
    ship_agent(&fleet, "9.0.0", &good)?;
    wait_until("the new agent to prove itself", T, || {
        let status = fleet.agents[0].status()?;
        let agent = status.models.iter().find(|m| m.model == AGENT_MODEL);
        Ok(agent.is_some_and(|m| {
            m.current.as_ref().map(ToString::to_string).as_deref() == Some("9.0.0")
                && m.in_probation.is_none()
        }) && !state.join("handover.json").exists())
    })?;
    assert_eq!(
        fleet.agents[0].pid(),
        Some(pid),
        "the same process, as systemd sees it"
    );
    assert_eq!(
        exe_of(pid)?,
        installed("9.0.0"),
        "now running the new binary"
    );
    let told = told
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert!(
        told.iter().filter(|m| m.contains("READY=1")).count() >= 2,
        "each binary says it is ready: {told:?}"
    );
    // Regression: the old binary sent STOPPING=1 before the exec, and systemd left the
    // service "deactivating" under the new one.
    assert!(
        !told.iter().any(|m| m.contains("STOPPING=1")),
        "a handover is not a stop: {told:?}"
    );

    // A bad release: a binary that exits at once. The supervisor (here the test, as
    // systemd's Restart= would) starts the packaged agent again, which heals.
    let bad = fleet.dir.join("ferry-agent-10.0.0");
    std::fs::write(
        &bad,
        "#!/bin/sh\necho 'bad agent: exits at start' >&2\nexit 1\n",
    )?;
    ship_agent(&fleet, "10.0.0", &bad)?;
    let mut restarts = 0;
    wait_until("the previous agent to come back", T, || {
        if fleet.agents[0].restart_if_exited()? {
            restarts += 1;
        }
        let status = fleet.agents[0].status()?;
        let Some(agent) = status.models.iter().find(|m| m.model == AGENT_MODEL) else {
            return Ok(false);
        };
        Ok(restarts > 0
            && status.daemon_running
            && agent.current.as_ref().map(ToString::to_string).as_deref() == Some("9.0.0")
            && agent
                .holds
                .iter()
                .any(|h| h.version.to_string() == "10.0.0"))
    })?;
    let pid = fleet.agents[0].pid().context("the agent runs")?;
    wait_until("the healed agent to exec the 9.0.0 binary", T, || {
        Ok(exe_of(pid)? == installed("9.0.0"))
    })?;
    let status = fleet.agents[0].status()?;
    let agent = status
        .models
        .iter()
        .find(|m| m.model == AGENT_MODEL)
        .context("the agent model")?;
    let error = agent.last_error.as_ref().context("the failure is kept")?;
    assert!(error.message.contains("did not prove itself"), "{error:?}");
    // The model the device runs was never touched.
    let main = &status.models[0];
    assert_eq!(
        main.current.as_ref().map(ToString::to_string).as_deref(),
        Some("1.0.0")
    );

    // The coordinator hears of the rollback, and the device stays on 9.0.0 while 10.0.0 is
    // the alias's target.
    wait_until("the rollback reported to the coordinator", T, || {
        let devices = fleet.coordinator.devices()?;
        Ok(devices.iter().any(|d| {
            d.recent_events.iter().any(|e| {
                matches!(&e.kind, ferry_shared::wire::EventKind::HealthRollback { from, .. }
                    if from.to_string() == "10.0.0")
            }) && d.models.iter().any(|m| {
                m.model.as_str() == AGENT_MODEL
                    && m.active.as_ref().map(ToString::to_string).as_deref() == Some("9.0.0")
            })
        }))
    })?;

    // Regression: a release that is no program at all was exec'd anyway, and the C library
    // ran it through /bin/sh as a script. It is refused before the exec (as is a binary for
    // another machine), and the running agent heals at once, in the same process.
    let pid = fleet.agents[0].pid().context("the agent runs")?;
    let unrunnable = fleet.dir.join("ferry-agent-11.0.0");
    std::fs::write(&unrunnable, b"no program: neither ELF nor #!\n".repeat(64))?;
    ship_agent(&fleet, "11.0.0", &unrunnable)?;
    wait_until("the unrunnable agent held back", T, || {
        if fleet.agents[0].restart_if_exited()? {
            return Err(Hopeless("the agent exited instead of healing in place".into()).into());
        }
        let status = fleet.agents[0].status()?;
        let agent = status.models.iter().find(|m| m.model == AGENT_MODEL);
        Ok(agent.is_some_and(|m| {
            m.current.as_ref().map(ToString::to_string).as_deref() == Some("9.0.0")
                && m.holds.iter().any(|h| h.version.to_string() == "11.0.0")
        }) && !state.join("handover.json").exists())
    })?;
    assert_eq!(fleet.agents[0].pid(), Some(pid));
    assert_eq!(exe_of(pid)?, installed("9.0.0"), "back on the 9.0.0 binary");
    assert!(
        !installed("11.0.0").exists(),
        "the failed version is removed"
    );
    let status = fleet.agents[0].status()?;
    let error = status
        .models
        .iter()
        .find(|m| m.model == AGENT_MODEL)
        .and_then(|m| m.last_error.clone())
        .context("the failure is kept")?;
    assert!(error.message.contains("is not a program"), "{error:?}");
    Ok(())
}
