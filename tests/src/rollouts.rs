//! Driving rollouts from tests and the demo: reading a rollout's status, waiting for a phase,
//! playing the model server through the agents' metrics sockets, and reading where an alias
//! points.

use std::time::Duration;

use anyhow::{Context, Result};
use ferry_coordinator::api::{AliasView, RolloutView};
use ferry_shared::Version;
use ferry_shared::rollout::Phase;

use crate::fleet::{Fleet, MODEL};
use crate::wait::wait_until;

impl Fleet {
    /// `ferryctl rollout create --plan FILE` with `plan` (the body of `POST /api/v1/rollouts`,
    /// which names its `id`), written into the fleet's directory.
    pub fn create_rollout(&self, plan: &serde_json::Value) -> Result<()> {
        let id = plan["id"].as_str().context("the plan names no id")?;
        let path = self.dir.join(format!("plan-{id}.json"));
        std::fs::write(&path, serde_json::to_vec(plan)?)?;
        self.coordinator
            .ctl(&["rollout", "create", "--plan", &path.to_string_lossy()])?;
        Ok(())
    }

    /// `ferryctl rollout status ID --json`.
    pub fn rollout(&self, id: &str) -> Result<RolloutView> {
        self.coordinator.ctl_json(&["rollout", "status", id])
    }

    /// A rollout (or experiment) id whose first wave of `percent` % covers at least one agent
    /// but not all of them, so a test can tell the canary from the rest; and which agents it
    /// covers. Placement is a pure function of the id.
    pub fn id_splitting(&self, stem: &str, percent: u32) -> Result<(String, Vec<usize>)> {
        use ferry_shared::rollout::{Plan, Selector};
        use ferry_shared::wire::DeviceId;
        let ids: Vec<DeviceId> = self
            .agents
            .iter()
            .map(|a| {
                let id = a
                    .status()?
                    .device_id
                    .context("agent has no device id yet")?;
                DeviceId::parse(&id).context("device id")
            })
            .collect::<Result<_>>()?;
        for n in 0..1000 {
            let id = format!("{stem}-{n}");
            let plan =
                Plan::with_default_waves(&id, MODEL.parse()?, "1.0.0".parse()?, Selector::all());
            let canary: Vec<usize> = ids
                .iter()
                .enumerate()
                .filter(|(_, d)| plan.bucket(d) < percent * 100)
                .map(|(i, _)| i)
                .collect();
            if !canary.is_empty() && canary.len() < ids.len() {
                return Ok((id, canary));
            }
        }
        anyhow::bail!("no rollout id splits the fleet")
    }

    /// Waits until rollout `id` is in `phase`, calling `each_round` (say, to serve traffic)
    /// before every look.
    pub fn wait_rollout(
        &self,
        id: &str,
        phase: Phase,
        timeout: Duration,
        mut each_round: impl FnMut(&Fleet) -> Result<()>,
    ) -> Result<Duration> {
        wait_until(&format!("rollout {id} to be {phase:?}"), timeout, || {
            each_round(self)?;
            Ok(self.rollout(id)?.phase == phase)
        })
    }

    /// Plays the model server on every agent: `per_agent` requests through its metrics socket,
    /// `error_pct(version it runs)` percent of them failing, and as many shadow runs of its
    /// candidate when it has one. A socket not bound yet (an agent starting) just misses the
    /// round.
    pub fn serve_requests(
        &self,
        per_agent: usize,
        error_pct: impl Fn(&str) -> usize,
    ) -> Result<()> {
        self.serve(per_agent, |version, i| {
            let outcome = if i % 100 < error_pct(version) {
                "error"
            } else {
                "ok"
            };
            format!("{outcome} {}", 8 + i % 7)
        })
    }

    /// Plays the model server on every agent: `per_agent` requests through its metrics socket,
    /// request `i` of a version reported as `line(version, i)` (`ok 12 score=0.9`), and as many
    /// shadow runs of its candidate when it has one.
    pub fn serve(&self, per_agent: usize, line: impl Fn(&str, usize) -> String) -> Result<()> {
        let client = std::os::unix::net::UnixDatagram::unbound()?;
        for agent in &self.agents {
            let Some(version) = agent.current() else {
                continue;
            };
            let socket = agent.state_dir.join("metrics.sock");
            let serving =
                std::iter::once(("", version)).chain(agent.candidate().map(|c| ("shadow ", c)));
            for (prefix, version) in serving {
                for i in 0..per_agent {
                    let datagram = format!("{prefix}{}", line(&version.to_string(), i));
                    let _ = client.send_to(datagram.as_bytes(), &socket);
                }
            }
        }
        Ok(())
    }

    /// Where `MODEL@alias` points, from `ferryctl alias list --json`.
    pub fn alias_target(&self, alias: &str) -> Result<Option<Version>> {
        let aliases: Vec<AliasView> = self.coordinator.ctl_json(&["alias", "list", MODEL])?;
        Ok(aliases
            .into_iter()
            .find(|a| a.alias == alias)
            .map(|a| a.version))
    }

    /// Like [`Fleet::alias_target`], failing when the alias is unset.
    pub fn prod(&self) -> Result<Version> {
        self.alias_target("prod")?.context("prod is unset")
    }
}
