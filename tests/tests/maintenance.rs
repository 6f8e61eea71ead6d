//! Update windows and application locks on real processes: a device outside its window
//! downloads the release but keeps running the old one, a device whose application holds a
//! lock (a file, or a datagram on the metrics socket) waits too; fragmentation and `/metrics`
//! say why; the lock's release and the window's opening let each switch at once.

use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_coordinator::api::BehindReason;
use ferry_tests::{AgentSpec, Fleet, model_bytes, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

/// A daily window of an hour, twelve hours from now (UTC): closed for the test's length.
fn closed_window() -> String {
    let hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 3600 % 24);
    let start = (hour + 12) % 24;
    format!("daily {start:02}:00-{:02}:00", start + 1)
}

/// Why `name`'s device is behind, by fragmentation.
fn behind(fleet: &Fleet, name: &str) -> Result<Option<(BehindReason, Option<String>)>> {
    fleet.coordinator.behind(name, None)
}

#[test]
fn windows_and_locks_hold_the_switch_and_say_why_until_they_let_go() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    let utc = [("TZ", "UTC")];
    fleet.add_agent_with_env(
        AgentSpec {
            extra: format!("[maintenance]\nwindows = [\"{}\"]\n", closed_window()),
            ..AgentSpec::named("windowed")
        },
        &utc,
    )?;
    let lock_file = fleet.dir.join("app.lock");
    fleet.add_agent_with_env(
        AgentSpec {
            extra: format!("[maintenance]\nlock_file = \"{}\"\n", lock_file.display()),
            ..AgentSpec::named("file-locked")
        },
        &utc,
    )?;
    fleet.add_agent_with_env(AgentSpec::named("socket-locked"), &utc)?;
    fleet.publish("1.0.0", &model_bytes(1, MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    // A window holds every switch, the first install's too.
    let [windowed, file_locked, socket_locked] = [0, 1, 2].map(|i| &fleet.agents[i]);
    wait_until("the unwindowed devices on 1.0.0", WAIT, || {
        Ok(file_locked.current().is_some() && socket_locked.current().is_some())
    })?;
    ensure!(windowed.current().is_none(), "switched outside its window");

    // The applications take their locks.
    std::fs::write(&lock_file, "nightly batch\n")?;
    socket_locked.tell("lock 600 surgery in progress")?;
    // The agents look at their gate every second.
    std::thread::sleep(Duration::from_millis(2500));
    fleet.publish("2.0.0", &model_bytes(2, MIB, true))?;
    fleet.set_prod("2.0.0", "next")?;
    let said = wait_until("fragmentation to say why each waits", WAIT, || {
        let reasons = [
            behind(&fleet, "windowed")?,
            behind(&fleet, "file-locked")?,
            behind(&fleet, "socket-locked")?,
        ];
        Ok(
            matches!(&reasons[0], Some((BehindReason::WaitingForWindow, Some(d))) if d.starts_with("next window opens at"))
                && matches!(&reasons[1], Some((BehindReason::LockedByApplication, Some(d))) if d == "nightly batch")
                && matches!(&reasons[2], Some((BehindReason::LockedByApplication, Some(d))) if d.starts_with("surgery in progress")),
        )
    });
    if said.is_err() {
        for name in ["windowed", "file-locked", "socket-locked"] {
            eprintln!("{name}: {:?}", behind(&fleet, name)?);
        }
        for d in fleet.coordinator.devices()? {
            eprintln!("{:?} {:?}", d.labels.get("name"), d.conditions);
        }
        eprintln!("{}", fleet.agents[1].log());
    }
    said?;
    // Downloaded and verified meanwhile (downloads happen any time), not switched.
    for agent in [file_locked, socket_locked] {
        ensure!(
            agent.installed()?.iter().any(|v| v == "2.0.0"),
            "{:?}",
            agent.installed()?
        );
        ensure!(agent.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"));
    }
    let metrics = fleet.coordinator.get("/metrics", "viewer")?.body;
    ensure!(
        metrics.contains("ferry_devices_deferring{model=\"detector\",reason=\"locked\"} 2")
            && metrics.contains("ferry_devices_deferring{model=\"detector\",reason=\"window\"} 1"),
        "{metrics}"
    );

    // The locks let go: each switches at once.
    std::fs::remove_file(&lock_file)?;
    socket_locked.tell("unlock")?;
    for agent in [file_locked, socket_locked] {
        wait_until("a released device to switch", WAIT, || {
            Ok(agent.current().map(|v| v.to_string()).as_deref() == Some("2.0.0"))
        })?;
    }
    ensure!(windowed.current().is_none(), "switched outside its window");

    // Its window opens (the configuration now says all day): it switches.
    let config = std::fs::read_to_string(&fleet.agents[0].config)?;
    std::fs::write(
        &fleet.agents[0].config,
        config.replace(&closed_window(), "daily 00:00-24:00"),
    )?;
    fleet.agents[0].terminate()?;
    fleet.agents[0].start_with_env(&utc)?;
    wait_until("the windowed device to switch in its window", WAIT, || {
        Ok(fleet.agents[0].current().map(|v| v.to_string()).as_deref() == Some("2.0.0"))
    })?;
    Ok(())
}

#[test]
fn a_cohorts_windows_hold_its_devices_and_an_operators_now_overrides_windows_and_locks()
-> Result<()> {
    let config = format!(
        "[[maintenance]]\ncohort = \"name=cohort-windowed\"\nwindows = [\"{}\"]\n",
        closed_window()
    );
    let mut fleet = Fleet::start_configured(0, None, Some(&config))?;
    let utc = [("TZ", "UTC")];
    fleet.add_agent_with_env(AgentSpec::named("cohort-windowed"), &utc)?;
    fleet.add_agent_with_env(AgentSpec::named("locked"), &utc)?;
    let [windowed, locked] = [0, 1].map(|i| &fleet.agents[i]);
    let socket = locked.state_dir.join("metrics.sock");
    wait_until("the metrics socket", WAIT, || Ok(socket.exists()))?;
    locked.tell("lock 3600 long job")?;
    std::thread::sleep(Duration::from_millis(2500));
    fleet.publish("1.0.0", &model_bytes(1, MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    wait_until("both to say why they wait", WAIT, || {
        Ok(matches!(
            behind(&fleet, "cohort-windowed")?,
            Some((BehindReason::WaitingForWindow, _))
        ) && matches!(
            behind(&fleet, "locked")?,
            Some((BehindReason::LockedByApplication, _))
        ))
    })?;
    ensure!(windowed.current().is_none() && locked.current().is_none());

    // An operator lets 2.0.0 go ahead at once, for everyone it reaches.
    fleet.publish("2.0.0", &model_bytes(2, MIB, true))?;
    let plan = serde_json::json!({
        "id": "right-now",
        "model": ferry_tests::MODEL,
        "version": "2.0.0",
        "now": true,
        "reason": "security fix",
        "waves": [{"percent": 100.0, "bake_secs": 0, "gates": [
            {"kind": "InstallFailures", "threshold": 0.0, "min_samples": 2},
        ]}],
    });
    let path = fleet.dir.join("right-now.json");
    std::fs::write(&path, serde_json::to_vec(&plan)?)?;
    fleet
        .coordinator
        .ctl(&["rollout", "create", "--plan", &path.to_string_lossy()])?;
    fleet.wait_all_on("2.0.0", WAIT)?;
    Ok(())
}
