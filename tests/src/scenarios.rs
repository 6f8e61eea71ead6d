//! Fleets in the states the fleet-view tests (and the dashboard check) look at.

use std::time::Duration;

use anyhow::Result;

use crate::fleet::{AgentSpec, Fleet, model_bytes};

const T: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

/// Three agents (two CPU, one GPU) with `prod` at 2.0.0, the GPU one rolled back by hand to
/// 1.0.0 (so it is behind, "pinned").
pub fn fragmented_fleet() -> Result<Fleet> {
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
