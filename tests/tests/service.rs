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
