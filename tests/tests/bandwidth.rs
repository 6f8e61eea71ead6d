//! Download caps on real processes: an agent's `[download] max_rate` holds its download to
//! the cap (it cannot finish sooner than the bytes allow), a schedule window lifts it, and a
//! coordinator's `serve_max_rate` holds every device together. Lower bounds only: a slower
//! machine only takes longer; how close to the cap transfers run is `ferry-ratecap-bench`'s.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ferry_tests::{AgentSpec, Fleet};

const WAIT: Duration = Duration::from_secs(120);
const MIB: usize = 1024 * 1024;

#[test]
fn a_device_cap_holds_its_download_and_a_schedule_window_lifts_it() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    fleet.add_agent(AgentSpec {
        extra: "[download]\nmax_rate = \"1 MiB/s\"\n".into(),
        ..AgentSpec::named("capped")
    })?;
    fleet.add_agent(AgentSpec {
        extra: "[download]\nmax_rate = \"1 MiB/s\"\n[[download.schedule]]\nwindows = [\"daily 00:00-24:00\"]\nmax_rate = \"unlimited\"\n".into(),
        ..AgentSpec::named("lifted")
    })?;
    let [capped, lifted] = [0, 1].map(|i| &fleet.agents[i]);
    ensure!(capped.status()?.download_cap.as_deref() == Some("1 MiB/s"));
    ensure!(lifted.status()?.download_cap.as_deref() == Some("unlimited"));
    // Random bytes: nothing compresses, every byte crosses the link.
    let bytes = ferry_shared::testutil::noise(5, 3 * MIB);
    let mut artifact = ferry_tests::HEALTH_MAGIC.to_vec();
    artifact.extend_from_slice(&bytes);
    fleet.publish("1.0.0", &artifact)?;
    fleet.set_prod("1.0.0", "capped")?;
    fleet.wait_all_on("1.0.0", WAIT)?;
    let transfer = capped.transfer_for("1.0.0")?;
    ensure!(transfer.bytes_on_wire > 3 * MIB as u64, "{transfer:?}");
    // 3 MiB at 1 MiB/s, less one burst of 50 ms.
    ensure!(
        transfer.duration_ms >= 2800,
        "3 MiB at 1 MiB/s took {} ms",
        transfer.duration_ms
    );
    ensure!(lifted.current_bytes("model.bin")? == artifact);
    Ok(())
}

#[test]
fn a_coordinator_cap_holds_every_device_together() -> Result<()> {
    let fleet = Fleet::start_configured(2, None, Some("serve_max_rate = \"1 MiB/s\"\n"))?;
    let mut artifact = ferry_tests::HEALTH_MAGIC.to_vec();
    artifact.extend_from_slice(&ferry_shared::testutil::noise(6, 3 * MIB / 2));
    fleet.publish("1.0.0", &artifact)?;
    let started = Instant::now();
    fleet.set_prod("1.0.0", "served slowly")?;
    fleet.wait_all_on("1.0.0", WAIT)?;
    let took = started.elapsed();
    let mut served = 0;
    for agent in &fleet.agents {
        served += agent.transfer_for("1.0.0")?.bytes_on_wire;
    }
    ensure!(served > 3 * MIB as u64, "{served} bytes");
    // 3 MiB between them at 1 MiB/s, less a burst.
    ensure!(took >= Duration::from_millis(2800), "took {took:?}");
    Ok(())
}
