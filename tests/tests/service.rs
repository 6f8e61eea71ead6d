//! The agent as a systemd service: readiness and watchdog notifications on NOTIFY_SOCKET.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ferry_tests::{AgentSpec, Fleet};

#[test]
fn the_agent_notifies_systemd_when_ready_and_pings_the_watchdog() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    let socket_path = fleet.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path)?;
    socket.set_read_timeout(Some(Duration::from_secs(30)))?;
    let socket_text = socket_path.to_string_lossy().into_owned();
    fleet.add_agent_with_env(
        AgentSpec::named("under-systemd"),
        &[("NOTIFY_SOCKET", &socket_text), ("WATCHDOG_USEC", "400000")],
    )?;

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 512];
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        if Instant::now() > deadline {
            bail!("notifications so far: {seen:?}");
        }
        let n = socket.recv(&mut buf)?;
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = seen.iter().position(|m| m.contains("READY=1"));
    let first_ping = seen.iter().position(|m| m.contains("WATCHDOG=1"));
    assert!(ready < first_ping, "ready comes first: {seen:?}");
    Ok(())
}

const T: Duration = Duration::from_secs(60);

/// The mode bits of `path` (not following a link).
fn mode(path: &std::path::Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777)
}

/// Regression: under the shipped unit (`UMask=0077`, state 0700) every model file was 0600 and
/// `metrics.sock` the agent's alone, so a model server running as another user got
/// "Permission denied" on `STATE/models/MODEL/current/FILE`. Now the agent gives installed
/// versions, the directories on the way to them and the socket to its group whatever its
/// umask, keeps its key and state to itself, and opens up versions an older build installed.
#[test]
fn a_model_server_of_the_agents_group_can_read_models_and_report_metrics() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut fleet = Fleet::start(0, None)?;
    fleet.add_agent(AgentSpec {
        umask: Some(0o077),
        ..AgentSpec::named("private-umask")
    })?;
    let bytes = ferry_tests::model_bytes(3, 256 * 1024, true);
    fleet.ship("1.0.0", &bytes, T)?;
    let state = fleet.agents[0].state_dir.clone();
    let model = fleet.agents[0].model.clone();
    let version_dir = state.join("versions").join(&model).join("1.0.0");
    let file = std::fs::read_dir(&version_dir)?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} is empty", version_dir.display()))??
        .path();
    let socket = state.join("metrics.sock");

    let check = |stage: &str| -> Result<()> {
        for dir in [
            state.clone(),
            state.join("models"),
            state.join("models").join(&model),
            state.join("versions"),
            state.join("versions").join(&model),
            version_dir.clone(),
        ] {
            assert_eq!(mode(&dir)?, 0o750, "{stage}: {}", dir.display());
        }
        assert_eq!(mode(&file)?, 0o640, "{stage}: {}", file.display());
        assert_eq!(mode(&socket)?, 0o660, "{stage}: the metrics socket");
        for private in ["identity.key", "state.json"] {
            assert_eq!(mode(&state.join(private))? & 0o077, 0, "{stage}: {private}");
        }
        Ok(())
    };
    check("first install")?;

    // A real other user of the agent's group, where this test may switch users.
    let is_root = std::fs::metadata("/proc/self")?.uid() == 0;
    if is_root && std::path::Path::new("/usr/bin/setpriv").exists() {
        let gid = std::fs::metadata(&state)?.gid();
        let served = state.join("models").join(&model).join("current").join(
            file.file_name()
                .ok_or_else(|| anyhow::anyhow!("no file name"))?,
        );
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                &format!("--regid={gid}"),
                "--clear-groups",
                "--",
            ])
            .args(["sh", "-c", "test -w \"$1\" && cat \"$0\""])
            .arg(&served)
            .arg(&socket)
            .output()?;
        assert!(
            out.status.success(),
            "uid 65534 of group {gid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, bytes, "the model server reads the model");
    }

    // What an older build installed, 0600 under a 0700 state directory, opens up at start.
    fleet.agents[0].terminate()?;
    for (path, old) in [(&file, 0o600), (&version_dir, 0o700), (&state, 0o700)] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(old))?;
    }
    fleet.agents[0].start()?;
    // The stop removed the socket; the restarted agent binds it again after reconciling.
    ferry_tests::wait_until("the restarted agent's reconciliation and socket", T, || {
        Ok(mode(&file)? == 0o640 && mode(&state)? == 0o750 && mode(&socket)? == 0o660)
    })?;
    check("after a restart over an older build's modes")?;
    Ok(())
}

/// `ferry-agent check`, which the unit runs as its ExecCondition: 0 for a configuration the
/// agent can start with, 1 with the reason for one it cannot (the packaged example names an
/// enrollment token file that does not exist), so systemd skips the unit instead of failing
/// and restarting it every few seconds.
#[test]
fn ferry_agent_check_tells_a_usable_configuration_from_an_unusable_one() -> Result<()> {
    let fleet = Fleet::start(1, None)?;
    let agent = ferry_tests::Binaries::get()?.agent;
    let config = &fleet.agents[0].config;
    let good = std::process::Command::new(&agent)
        .arg("--config")
        .arg(config)
        .arg("check")
        .output()?;
    assert!(good.status.success(), "{good:?}");
    assert!(String::from_utf8_lossy(&good.stdout).contains("can start"));

    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/agent.example.toml");
    let unusable = fleet.dir.join("example.toml");
    std::fs::copy(&example, &unusable)?;
    let bad = std::process::Command::new(&agent)
        .arg("--config")
        .arg(&unusable)
        .arg("check")
        .output()?;
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("enrollment.token"),
        "says what is missing: {bad:?}"
    );
    Ok(())
}
