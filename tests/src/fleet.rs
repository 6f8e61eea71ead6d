//! A whole fleet in one directory: a coordinator, a publisher key it trusts, and agents
//! following `MODEL@prod` with a health check that test-loads the artifact.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::binaries::Binaries;
use crate::process::{Agent, Cadence, Coordinator};
use crate::wait::wait_until;

/// Every healthy artifact of the demo model carries these bytes in its first 4 KiB (at the
/// start, or in a safetensors header's metadata); the agents' health check refuses a file
/// without them, the way a real check refuses a model that fails to load.
pub const HEALTH_MAGIC: &[u8] = b"FERRYMODEL";

/// The model the fleet runs.
pub const MODEL: &str = "detector";
/// The second model of tests with several models per agent.
pub const TOKENIZER: &str = "tokenizer";

/// A deterministic artifact of `len` bytes for `seed`; healthy ones start with the magic.
pub fn model_bytes(seed: u64, len: usize, healthy: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    if healthy {
        out.extend_from_slice(HEALTH_MAGIC);
    }
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Low-entropy bytes, so the artifact compresses like real weights do, somewhat.
        out.push((x % 16) as u8);
    }
    out.truncate(len);
    out
}

/// A healthy model: a safetensors file (the magic in its metadata) of two f32 tensors holding
/// `floats` weights between them.
pub fn weights(seed: u64, floats: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(floats * 4);
    for _ in 0..floats {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Roughly symmetric around zero, magnitudes up to about 0.5, as trained weights are.
        let unit = (x >> 40) as f32 / (1u64 << 24) as f32;
        data.extend_from_slice(&((unit - 0.5) * (unit + 0.1)).to_le_bytes());
    }
    let (a, b) = data.split_at(floats / 3 * 4);
    ferry_shared::testutil::safetensors(
        &[("check", &String::from_utf8_lossy(HEALTH_MAGIC))],
        &[("encoder.weight", "F32", a), ("decoder.weight", "F32", b)],
    )
}

/// `weights` after fine-tuning: every weight moved by up to ±`relative` of itself.
pub fn nudged(weights: &[u8], seed: u64, relative: f32) -> Vec<u8> {
    let header = weights.get(..8).map_or(0, |b| {
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    });
    let (head, tensors) = weights.split_at(8 + header as usize);
    let mut out = head.to_vec();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for w in tensors.chunks_exact(4) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let unit = (x >> 40) as f32 / (1u64 << 24) as f32;
        let v = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        out.extend_from_slice(&(v * (1.0 + relative * (2.0 * unit - 1.0))).to_le_bytes());
    }
    out
}

/// The chunk index the coordinator computes for `bytes`.
pub fn chunks_of(bytes: &[u8]) -> ferry_shared::chunk::ChunkIndex {
    ferry_shared::chunk::ChunkIndex::build(bytes, ferry_shared::chunk::ChunkParams::DEFAULT)
        .map(|c| c.index)
        .unwrap_or_else(|e| panic!("chunking in memory cannot fail: {e}"))
}

/// How to configure one agent.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    /// Name (directory name).
    pub name: String,
    /// Pinned fingerprint; `None` for the coordinator's real one.
    pub fingerprint: Option<String>,
    /// Enrollment token; `None` for the coordinator's real one.
    pub token: Option<String>,
    /// `cpu` or `gpu`; empty: left to the agent's hardware detection.
    pub accelerator: String,
    /// Root metadata to trust instead of the publisher key (`root_file`).
    pub root_file: Option<PathBuf>,
    /// TOML appended to the configuration (whole sections, e.g. `[application]`).
    pub extra: String,
    /// Top-level TOML lines, placed before the sections (e.g. `mirrors = […]`).
    pub top: String,
    /// The QUIC address to reach the coordinator at (say, a [`crate::relay::Relay`]'s);
    /// `None` for the coordinator's own.
    pub via: Option<std::net::SocketAddr>,
    /// The file-mode creation mask the agent starts with; `None` inherits the test's.
    pub umask: Option<u32>,
    /// Further coordinators to try, after the first, when it cannot be reached.
    pub also: Vec<std::net::SocketAddr>,
    /// Follow these models (`[[models]]`, each with the shared health check) instead of
    /// the one `model = …`; empty: the test model alone. Each is a name, optionally followed
    /// by a newline and TOML for that model's table (`[models.application]` …).
    pub models: Vec<String>,
}

impl AgentSpec {
    /// A well-configured CPU agent.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            fingerprint: None,
            token: None,
            accelerator: "cpu".into(),
            root_file: None,
            extra: String::new(),
            top: String::new(),
            via: None,
            umask: None,
            also: Vec::new(),
            models: Vec::new(),
        }
    }
}

/// A coordinator and its agents in one directory.
pub struct Fleet {
    /// The working directory.
    pub dir: PathBuf,
    bins: Binaries,
    /// The agents.
    pub agents: Vec<Agent>,
    /// The coordinator.
    pub coordinator: Coordinator,
    /// The publisher's private key.
    pub key: PathBuf,
    // Declared last: fields drop in order, so the processes are gone before the directory.
    _temp: Option<tempfile::TempDir>,
}

impl Fleet {
    /// Starts a coordinator, makes and trusts a publisher key, and starts `agents` agents.
    /// With `keep`, works in that directory (created) instead of a temporary one.
    pub fn start(agents: usize, keep: Option<&Path>) -> Result<Fleet> {
        Self::start_configured(agents, keep, None)
    }

    /// Like [`Fleet::start`], the coordinator reading `config` (TOML) as its configuration.
    pub fn start_configured(
        agents: usize,
        keep: Option<&Path>,
        config: Option<&str>,
    ) -> Result<Fleet> {
        Self::start_at(agents, keep, config, Cadence::TESTS)
    }

    /// Like [`Fleet::start_configured`], the coordinator's timed work at `cadence`.
    pub fn start_at(
        agents: usize,
        keep: Option<&Path>,
        config: Option<&str>,
        cadence: Cadence,
    ) -> Result<Fleet> {
        let bins = Binaries::get()?;
        let (dir, temp) = match keep {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (std::fs::canonicalize(d)?, None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("ferry-e2e-").tempdir()?;
                (t.path().to_owned(), Some(t))
            }
        };
        let config_file = match config {
            Some(text) => {
                let file = dir.join("coordinator.toml");
                std::fs::write(&file, text)?;
                Some(file)
            }
            None => None,
        };
        let coordinator = Coordinator::start_at(
            &bins,
            &dir.join("coordinator"),
            &dir.join("coordinator.log"),
            config_file.as_deref(),
            cadence,
        )?;
        let key = dir.join("publisher.key");
        coordinator.ctl(&["keys", "generate", "--out", &key.to_string_lossy()])?;
        coordinator.ctl(&[
            "keys",
            "trust",
            &format!("{}.pub", key.display()),
            "--name",
            "release-ci",
        ])?;
        let mut fleet = Fleet {
            dir,
            _temp: temp,
            bins,
            coordinator,
            agents: Vec::new(),
            key,
        };
        for i in 0..agents {
            fleet.add_agent(AgentSpec::named(&format!("agent-{}", i + 1)))?;
        }
        Ok(fleet)
    }

    /// A fleet on the stores an earlier build left (`scripts/make-fixtures.sh`): `fixture`'s
    /// coordinator data directory, publisher key and agent state are copied to a temporary
    /// directory, and the coordinator started on them. The agent, `agent-1`, is not started:
    /// [`Fleet::add_agent`] with that name starts it on its old state.
    pub fn from_fixture(fixture: &Path) -> Result<Fleet> {
        let bins = Binaries::get()?;
        let temp = tempfile::Builder::new()
            .prefix("ferry-upgrade-")
            .tempdir()?;
        let dir = temp.path().to_owned();
        let copy = |from: &Path, to: &Path| -> Result<()> {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(from)
                .arg(to)
                .status()?;
            anyhow::ensure!(status.success(), "cp -a {} failed", from.display());
            Ok(())
        };
        copy(&fixture.join("coordinator"), &dir.join("coordinator"))?;
        copy(&fixture.join("agent"), &dir.join("agents/agent-1/state"))?;
        for file in ["publisher.key", "publisher.key.pub", "root-1.tuf"] {
            copy(&fixture.join(file), &dir.join(file))?;
        }
        let coordinator = Coordinator::start(
            &bins,
            &dir.join("coordinator"),
            &dir.join("coordinator.log"),
        )?;
        let key = dir.join("publisher.key");
        Ok(Fleet {
            dir,
            _temp: Some(temp),
            bins,
            coordinator,
            agents: Vec::new(),
            key,
        })
    }

    /// Starts another coordinator beside the fleet's own, reading `config` (TOML), with the
    /// same TLS identity, snapshot key and tokens (copied from the first one's data
    /// directory), as an operator provisions the nodes of one fleet.
    pub fn start_node(&self, node: &str, config: &str, cadence: Cadence) -> Result<Coordinator> {
        let first = &self.coordinator.data_dir;
        let data = self.dir.join(format!("coordinator-{node}"));
        std::fs::create_dir_all(data.join("tls"))?;
        for file in [
            "tls/cert.der",
            "tls/key.der",
            "tls/reset.key",
            "snapshot.key",
            "admin.token",
            "viewer.token",
            "enrollment.token",
        ] {
            if first.join(file).exists() {
                std::fs::copy(first.join(file), data.join(file))?;
            }
        }
        let file = self.dir.join(format!("{node}.toml"));
        std::fs::write(&file, config)?;
        Coordinator::start_at(
            &self.bins,
            &data,
            &self.dir.join(format!("coordinator-{node}.log")),
            Some(&file),
            cadence,
        )
    }

    /// Writes an agent's configuration and starts it.
    pub fn add_agent(&mut self, spec: AgentSpec) -> Result<usize> {
        self.add_agent_with_env(spec, &[])
    }

    /// Writes an agent's configuration and starts it with extra environment variables.
    pub fn add_agent_with_env(&mut self, spec: AgentSpec, env: &[(&str, &str)]) -> Result<usize> {
        let home = self.dir.join("agents").join(&spec.name);
        std::fs::create_dir_all(&home)?;
        let state = home.join("state");
        let public = std::fs::read_to_string(format!("{}.pub", self.key.display()))?;
        let token_line = match &spec.token {
            Some(t) => format!("enrollment_token = \"{t}\""),
            None => format!(
                "enrollment_token_file = \"{}\"",
                self.coordinator.data_dir.join("enrollment.token").display()
            ),
        };
        let health = format!(
            "block=\"{home}/block-health\"; if [ -e \"$block\" ]; then touch \"{home}/health-reached\"; sleep 600; fi; \
             head -c 4096 \"$FERRY_MODEL_FILE\" | grep -qa {magic} || {{ echo \"$FERRY_MODEL $FERRY_VERSION failed to load: bad header\" >&2; exit 1; }}",
            home = home.display(),
            magic = String::from_utf8_lossy(HEALTH_MAGIC),
        );
        let config = format!(
            r#"coordinator = [{quic}]
coordinator_fingerprint = "{fp}"
{token_line}
state_dir = "{state}"
{following}
{trust}
{accel}
poll_interval_secs = 1
{top}

[labels]
fleet = "e2e"
name = "{name}"

[health_check]
command = ["sh", "-c", {health:?}]
timeout_secs = 900

{extra}
{models}
"#,
            quic = std::iter::once(spec.via.unwrap_or(self.coordinator.quic))
                .chain(spec.also.iter().copied())
                .map(|addr| format!("\"{addr}\""))
                .collect::<Vec<_>>()
                .join(", "),
            fp = spec
                .fingerprint
                .clone()
                .unwrap_or_else(|| self.coordinator.fingerprint.clone()),
            state = state.display(),
            trust = match &spec.root_file {
                Some(root) => format!("trusted_keys = []\nroot_file = \"{}\"", root.display()),
                None => format!("trusted_keys = [\"{}\"]", public.trim()),
            },
            accel = if spec.accelerator.is_empty() {
                String::new()
            } else {
                format!("accelerator = \"{}\"", spec.accelerator)
            },
            name = spec.name,
            extra = spec.extra,
            top = spec.top,
            following = if spec.models.is_empty() {
                format!("model = \"{MODEL}\"\nalias = \"prod\"")
            } else {
                String::new()
            },
            models = spec
                .models
                .iter()
                .map(|m| {
                    let (name, rest) = m.split_once('\n').unwrap_or((m, ""));
                    format!("[[models]]\nname = \"{name}\"\nalias = \"prod\"\n{rest}\n")
                })
                .collect::<String>(),
        );
        let config_path = home.join("agent.toml");
        std::fs::write(&config_path, config)?;
        let mut agent = Agent::new(
            &self.bins,
            &spec.name,
            &config_path,
            &state,
            MODEL,
            &home.join("agent.log"),
        );
        agent.umask = spec.umask;
        agent.start_with_env(env)?;
        self.agents.push(agent);
        Ok(self.agents.len() - 1)
    }

    /// Where the coordinator stores chunk `hash`.
    pub fn chunk_file(&self, hash: &ferry_shared::Digest) -> PathBuf {
        let hex = hash.to_hex();
        self.coordinator
            .data_dir
            .join("chunks")
            .join(&hex[..2])
            .join(format!("{hex}.zst"))
    }

    /// Makes the health check of agent `i` block (and signal that it was reached).
    pub fn block_health(&self, i: usize, block: bool) -> Result<PathBuf> {
        let home = self.agent_home(i);
        let flag = home.join("block-health");
        if block {
            std::fs::write(&flag, b"")?;
        } else if flag.exists() {
            std::fs::remove_file(&flag)?;
        }
        Ok(home.join("health-reached"))
    }

    fn agent_home(&self, i: usize) -> PathBuf {
        self.dir.join("agents").join(&self.agents[i].name)
    }

    /// One agent (`edge`) following [`MODEL`] and [`TOKENIZER`] (with `extra`, whole TOML
    /// sections, in its configuration), both published at 1.0.0 with `prod` there.
    pub fn two_models_at_one(extra: &str) -> Result<Fleet> {
        Self::two_models_at_one_with(&[MODEL.into(), TOKENIZER.into()], extra)
    }

    /// [`Fleet::two_models_at_one`] with the agent's models given as [`AgentSpec::models`]
    /// takes them (each may carry TOML for its table); [`MODEL`] and [`TOKENIZER`] among them.
    pub fn two_models_at_one_with(models: &[String], extra: &str) -> Result<Fleet> {
        let mut fleet = Fleet::start(0, None)?;
        fleet.add_agent(AgentSpec {
            models: models.to_vec(),
            extra: extra.into(),
            ..AgentSpec::named("edge")
        })?;
        for model in [MODEL, TOKENIZER] {
            fleet.publish_model(model, "1.0.0", true)?;
            fleet
                .coordinator
                .ctl(&["alias", "set", model, "prod", "1.0.0"])?;
        }
        Ok(fleet)
    }

    /// Publishes `model` `version` (file name `model.bin`): a model the test agents' health
    /// check passes, or not.
    pub fn publish_model(&self, model: &str, version: &str, healthy: bool) -> Result<()> {
        self.publish_model_with_meta(model, version, healthy, None)
    }

    /// [`Fleet::publish_model`] with `meta` (a `meta.toml` document: schemas, lineage).
    pub fn publish_model_with_meta(
        &self,
        model: &str,
        version: &str,
        healthy: bool,
        meta: Option<&str>,
    ) -> Result<()> {
        let seed = version.bytes().map(u64::from).sum::<u64>() + model.len() as u64;
        let bytes = model_bytes(seed, 256 * 1024, healthy);
        self.publish_at(None, model, version, &bytes, meta)?;
        Ok(())
    }

    /// Publishes `bytes` as `MODEL VERSION` (file name `model.bin`).
    pub fn publish(&self, version: &str, bytes: &[u8]) -> Result<String> {
        self.publish_with_meta(version, bytes, None)
    }

    /// Publishes `bytes` as `MODEL VERSION` with `meta` (a `meta.toml` document) as its
    /// lineage and metrics.
    pub fn publish_with_meta(
        &self,
        version: &str,
        bytes: &[u8],
        meta: Option<&str>,
    ) -> Result<String> {
        self.publish_at(None, MODEL, version, bytes, meta)
    }

    /// Publishes `bytes` as `MODEL VERSION` through the admin API at `url` (the
    /// coordinator's own when `None`: a relay's, say); returns what ferryctl printed on
    /// standard output and error.
    pub fn publish_through(&self, url: &str, version: &str, bytes: &[u8]) -> Result<String> {
        self.publish_at(Some(url), MODEL, version, bytes, None)
    }

    /// Publishes `bytes` as `model version` (file name `model.bin`) with `meta`, through the
    /// admin API at `url` (the coordinator's own when `None`).
    fn publish_at(
        &self,
        url: Option<&str>,
        model: &str,
        version: &str,
        bytes: &[u8],
        meta: Option<&str>,
    ) -> Result<String> {
        let artifacts = self.dir.join("artifacts");
        std::fs::create_dir_all(&artifacts)?;
        let file = artifacts.join(format!("{model}-{version}.bin"));
        std::fs::write(&file, bytes)?;
        let file = file.to_string_lossy().into_owned();
        let key = self.key.to_string_lossy().into_owned();
        let mut args = vec![
            "publish",
            model,
            version,
            &file,
            "--key",
            &key,
            "--file-name",
            "model.bin",
        ];
        let meta_file = artifacts.join(format!("{model}-{version}.meta.toml"));
        let meta_path = meta_file.to_string_lossy().into_owned();
        if let Some(meta) = meta {
            std::fs::write(&meta_file, meta)?;
            args.extend(["--meta", &meta_path]);
        }
        let Some(url) = url else {
            return self.coordinator.ctl(&args);
        };
        let out = self.coordinator.ctl_output_at(url, &args)?;
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        anyhow::ensure!(out.status.success(), "ferryctl publish failed: {printed}");
        Ok(printed)
    }

    /// Signs `MODEL VERSION` again with the fleet's publisher key, to expire in
    /// `expires_days` days (0: withdrawn now); returns what ferryctl printed.
    pub fn resign(&self, version: &str, expires_days: u32) -> Result<String> {
        self.coordinator.ctl(&[
            "releases",
            "resign",
            MODEL,
            version,
            "--key",
            &self.key.to_string_lossy(),
            "--expires-days",
            &expires_days.to_string(),
        ])
    }

    /// Publishes `bytes` as `version`, points `prod` at it and waits until every agent runs
    /// it.
    pub fn ship(&self, version: &str, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.publish(version, bytes)?;
        self.set_prod(version, "shipped by a test")?;
        self.wait_all_on(version, timeout)?;
        Ok(())
    }

    /// Points `MODEL@prod` at `version`.
    pub fn set_prod(&self, version: &str, reason: &str) -> Result<String> {
        self.coordinator
            .ctl(&["alias", "set", MODEL, "prod", version, "--reason", reason])
    }

    /// Waits until every agent runs `version`, confirmed by its health check (its `current`
    /// link names it and no switch awaits confirmation); returns how long it took.
    pub fn wait_all_on(&self, version: &str, timeout: Duration) -> Result<Duration> {
        let v: ferry_shared::Version = version.parse()?;
        wait_until(&format!("every agent on {version}"), timeout, || {
            if let Some(dead) = self.agents.iter().find(|a| !a.is_alive()) {
                return Err(crate::wait::Hopeless(format!(
                    "{} exited: {}",
                    dead.name,
                    dead.log().lines().last().unwrap_or("")
                ))
                .into());
            }
            // A version an agent holds back (its health check failed, it rolled back) will
            // not come: waiting out the patience (an hour in the benches) tells nothing more.
            if let Some((name, why)) = self
                .agents
                .iter()
                .find_map(|a| a.hold_on(&v).map(|why| (&a.name, why)))
            {
                return Err(
                    crate::wait::Hopeless(format!("{name} holds {version} back: {why}")).into(),
                );
            }
            Ok(self
                .agents
                .iter()
                .all(|a| a.current().as_ref() == Some(&v) && !a.in_probation()))
        })
        .with_context(|| self.describe())
    }

    /// Waits until every agent of the fleet is enrolled: agents are started, not waited for,
    /// and what the coordinator does on an alias move (precompute for the devices following
    /// it) depends on whom it knows.
    pub fn wait_enrolled(&self, timeout: Duration) -> Result<Duration> {
        wait_until("every agent enrolled", timeout, || {
            Ok(self.coordinator.devices()?.len() >= self.agents.len())
        })
    }

    /// Waits until the coordinator has been told that every enrolled device runs `version` of
    /// [`MODEL`]: an agent switches before it reports, so [`Fleet::wait_all_on`] alone does not
    /// say the coordinator knows (what it precomputes for a device depends on that).
    pub fn wait_reported_on(&self, version: &str, timeout: Duration) -> Result<Duration> {
        let v: ferry_shared::Version = version.parse()?;
        wait_until(
            &format!("the coordinator told every device runs {version}"),
            timeout,
            || {
                let devices = self.coordinator.devices()?;
                Ok(devices.len() >= self.agents.len()
                    && devices.iter().all(|d| {
                        d.models
                            .iter()
                            .any(|m| m.model.as_str() == MODEL && m.active.as_ref() == Some(&v))
                    }))
            },
        )
    }

    /// One line per agent: what it runs, for failure messages.
    pub fn describe(&self) -> String {
        self.agents
            .iter()
            .map(|a| {
                format!(
                    "{}: current {:?}, previous {:?}; log tail: {}",
                    a.name,
                    a.current(),
                    a.previous(),
                    a.log()
                        .lines()
                        .rev()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" | ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
