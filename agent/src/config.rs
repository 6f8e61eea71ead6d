//! The agent's configuration (`agent.toml`). Every field is documented in
//! `agent/agent.example.toml`, which the tests load. Relative paths are resolved against the
//! configuration file's directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_shared::mirror::MirrorBase;
use ferry_shared::schema::{READS_LABEL, SENDS_LABEL, SchemaRange, SchemaRef, model_label};
use ferry_shared::sign::Keyring;
use ferry_shared::throttle::{Rate, RateSchedule};
use ferry_shared::variant_choice::DeviceProfile;
use ferry_shared::window::Window;
use ferry_shared::{Accelerator, AliasName, ModelName, PublicKey};
use serde::Deserialize;

use crate::reload::{HttpCall, ReloadAction, ReloadHook, UnitVerb};
use crate::updater::update_set::SetMode;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    coordinator: Addresses,
    #[serde(default = "default_server_name")]
    server_name: String,
    coordinator_fingerprint: String,
    enrollment_token: Option<String>,
    enrollment_token_file: Option<PathBuf>,
    state_dir: PathBuf,
    model: Option<ModelName>,
    #[serde(default = "default_alias")]
    alias: AliasName,
    #[serde(default)]
    models: Vec<RawModel>,
    #[serde(default)]
    trusted_keys: Vec<String>,
    root_file: Option<PathBuf>,
    accelerator: Option<Accelerator>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    application: Option<RawApplication>,
    health_check: Option<RawHealthCheck>,
    reload: Option<RawReload>,
    #[serde(default = "default_poll")]
    poll_interval_secs: u64,
    metrics_socket: Option<PathBuf>,
    self_update: Option<RawSelfUpdate>,
    #[serde(default)]
    mirrors: Vec<MirrorBase>,
    #[serde(default = "default_mirror_timeout")]
    mirror_timeout_secs: u64,
    #[serde(default = "default_detect_hardware")]
    detect_hardware: bool,
    hardware_root: Option<PathBuf>,
    download: Option<RawDownload>,
    maintenance: Option<RawMaintenance>,
    #[serde(default)]
    update_sets: Vec<RawUpdateSet>,
}

/// One `[[update_sets]]` entry: models that switch as one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdateSet {
    models: Vec<ModelName>,
    #[serde(default)]
    mode: SetMode,
}

/// One `[[models]]` entry: a model the device follows, with its own checks (the top-level
/// `[health_check]` and `[reload]` serve the models that give none).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: ModelName,
    #[serde(default = "default_alias")]
    alias: AliasName,
    health_check: Option<RawHealthCheck>,
    reload: Option<RawReload>,
    application: Option<RawApplication>,
}

/// `[maintenance]`: when the device may switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    #[serde(default)]
    windows: Vec<Window>,
    #[serde(default)]
    downloads: Downloads,
    lock_file: Option<PathBuf>,
}

/// When downloads happen, with update windows.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Downloads {
    /// Whenever the coordinator asks; only the switch waits for a window.
    #[default]
    AnyTime,
    /// Inside the windows too.
    InWindow,
}

/// `[download]`: the download cap and its schedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDownload {
    #[serde(default = "unlimited")]
    max_rate: Rate,
    #[serde(default)]
    schedule: Vec<RawRatePeriod>,
}

/// One `[[download.schedule]]` entry: another cap inside these windows (local time).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRatePeriod {
    windows: Vec<Window>,
    max_rate: Rate,
}

fn unlimited() -> Rate {
    Rate::Unlimited
}

fn default_detect_hardware() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelfUpdate {
    #[serde(default = "default_agent_model")]
    model: ModelName,
    alias: Option<AliasName>,
    #[serde(default = "default_prove_within")]
    prove_within_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    sends: Option<String>,
    reads: Option<String>,
}

impl RawApplication {
    fn validate(self) -> Result<Application> {
        Ok(Application {
            sends: self
                .sends
                .map(|s| s.parse())
                .transpose()
                .context("application.sends")?,
            reads: self
                .reads
                .map(|s| s.parse())
                .transpose()
                .context("application.reads")?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    command: Vec<String>,
    #[serde(default = "default_health_timeout")]
    timeout_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReload {
    command: Option<Vec<String>>,
    unit: Option<String>,
    #[serde(default)]
    unit_action: UnitVerb,
    url: Option<String>,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    #[serde(default = "default_reload_timeout")]
    timeout_secs: u64,
}

fn default_reload_timeout() -> u64 {
    30
}

impl RawHealthCheck {
    fn validate(self) -> Result<HealthCheck> {
        if self.command.is_empty() {
            bail!("health_check.command is empty");
        }
        Ok(HealthCheck {
            command: self.command,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
        })
    }
}

impl RawReload {
    fn validate(self) -> Result<ReloadHook> {
        let timeout = Duration::from_secs(self.timeout_secs.clamp(1, 3600));
        let http_options = self.method.is_some() || self.body.is_some() || !self.headers.is_empty();
        let action = match (self.command, self.unit, self.url) {
            (Some(command), None, None) => {
                if command.is_empty() {
                    bail!("reload.command is empty");
                }
                ReloadAction::Command(command)
            }
            (None, Some(unit), None) => {
                if unit.is_empty()
                    || unit.starts_with('-')
                    || !unit
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "@._-:\\".contains(c))
                {
                    bail!("reload.unit `{unit}` is not a systemd unit name");
                }
                ReloadAction::Unit {
                    unit,
                    verb: self.unit_action,
                }
            }
            (None, None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    bail!("reload.url `{url}` is not an http:// or https:// URL");
                }
                let method = self
                    .method
                    .unwrap_or_else(|| "POST".into())
                    .to_ascii_uppercase();
                if !["POST", "PUT", "GET"].contains(&method.as_str()) {
                    bail!("reload.method `{method}`: POST, PUT or GET");
                }
                if method == "GET" && self.body.is_some() {
                    bail!("reload.body with method GET: a GET has no body");
                }
                ReloadAction::Http(HttpCall {
                    method,
                    url,
                    headers: self.headers,
                    body: self.body,
                })
            }
            (None, None, None) => bail!("reload: set command, unit or url"),
            _ => bail!("reload: set one of command, unit and url"),
        };
        if !matches!(action, ReloadAction::Http(_)) && http_options {
            bail!("reload: method, headers and body go with url");
        }
        Ok(ReloadHook { action, timeout })
    }
}

/// Most models one agent follows.
pub const MAX_MODELS: usize = 16;

fn default_server_name() -> String {
    "localhost".into()
}
fn default_alias() -> AliasName {
    // A constant that satisfies the alias rules.
    "prod"
        .parse()
        .unwrap_or_else(|_| unreachable!("`prod` is a valid alias"))
}
fn default_poll() -> u64 {
    30
}
fn default_health_timeout() -> u64 {
    30
}
fn default_agent_model() -> ModelName {
    "ferry-agent"
        .parse()
        .unwrap_or_else(|_| unreachable!("`ferry-agent` is a valid model name"))
}
fn default_prove_within() -> u64 {
    120
}
fn default_mirror_timeout() -> u64 {
    30
}

/// The agent follows releases of its own binary (see [`crate::handover`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfUpdate {
    /// The model whose releases carry the agent, one variant per target triple.
    pub model: ModelName,
    /// The alias followed (by default the device's own).
    pub alias: AliasName,
    /// How long a new agent has to prove itself (connect, report, pass its health check)
    /// before the one it replaced comes back.
    pub prove_within: Duration,
}

/// The schemas the device's application speaks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Application {
    /// The input schema it sends the model.
    pub sends: Option<SchemaRef>,
    /// The output schema versions it reads.
    pub reads: Option<SchemaRange>,
}

/// A command run after each switch; exit status 0 means healthy.
#[derive(Clone, Debug)]
pub struct HealthCheck {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Longest it may run.
    pub timeout: Duration,
}

/// One coordinator address, or several (coordinators sharing one database, any of which
/// serves the device).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Addresses {
    One(SocketAddr),
    Several(Vec<SocketAddr>),
}

/// One model the device follows, with how a new version of it is checked.
#[derive(Clone, Debug)]
pub struct ModelSettings {
    /// The model.
    pub model: ModelName,
    /// The alias followed.
    pub alias: AliasName,
    /// Its health check.
    pub health_check: Option<HealthCheck>,
    /// How its model server is told to load a new current version ([`crate::reload`]).
    pub reload: Option<ReloadHook>,
    /// The schemas the application speaks to this model, when they differ from the device's
    /// `[application]` (announced as `app.sends@NAME`, `app.reads@NAME`).
    pub application: Option<Application>,
}

/// Models that switch as one ([`crate::updater::update_set`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateSet {
    /// Its members, in order (the order `ordered` switches them in); at least two, each one
    /// of the models followed, none in another set.
    pub models: Vec<ModelName>,
    /// How they switch.
    pub mode: SetMode,
}

/// Validated agent settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Coordinators' QUIC addresses (at least one), tried in turn: when one cannot be
    /// reached, the next is.
    pub coordinators: Vec<SocketAddr>,
    /// TLS server name.
    pub server_name: String,
    /// Pinned certificate fingerprint (`sha256:<hex>`).
    pub fingerprint: String,
    /// Enrollment token for first contact.
    pub enrollment_token: Option<String>,
    /// State directory.
    pub state_dir: PathBuf,
    /// The models the device follows, the first being the one its application's metrics
    /// speak for (at least one; names unique).
    pub models: Vec<ModelSettings>,
    /// Models that switch as one (`[[update_sets]]`).
    pub update_sets: Vec<UpdateSet>,
    /// Publisher keys trusted (when no root metadata is configured).
    pub trusted: Keyring,
    /// The initial root metadata (`ferryctl keys root`); with it, releases are checked
    /// against the coordinator's roots and snapshots instead of `trusted`.
    pub root_file: Option<PathBuf>,
    /// Accelerator this device offers.
    pub accelerator: Accelerator,
    /// Operator labels.
    pub labels: BTreeMap<String, String>,
    /// The schemas the application on the device speaks, announced so the coordinator can
    /// refuse a rollout or rollback to a model that no longer fits it.
    pub application: Application,
    /// The download cap by local time of week (`[download]`; unlimited when absent).
    pub download_rate: RateSchedule,
    /// When the device may switch (`[maintenance]`; any time when absent).
    pub maintenance: crate::maintenance::Maintenance,
    /// What the system says it is ([`crate::hardware`]), read at load (under
    /// `hardware_root`, `/` by default) unless `detect_hardware = false`; reported as labels
    /// over the operator's.
    pub hardware: BTreeMap<String, String>,
    /// Longest pause between reconnection attempts while the coordinator is unreachable.
    pub poll_interval: Duration,
    /// Unix datagram socket where the model server reports requests (see
    /// [`crate::metrics`]); `STATE_DIR/metrics.sock` by default.
    pub metrics_socket: PathBuf,
    /// Whether and how the agent updates itself.
    pub self_update: Option<SelfUpdate>,
    /// Mirrors to fetch whole chunks from before those the coordinator names (untrusted:
    /// every chunk is checked against the signed index; see [`crate::mirrors`]).
    pub mirrors: Vec<MirrorBase>,
    /// Longest one chunk request to a mirror may take, connection included: past it the
    /// mirror is dropped for the rest of the download (a slow loris).
    pub mirror_timeout: Duration,
}

/// Checks `[[update_sets]]` against the models followed.
fn validate_sets(sets: Vec<RawUpdateSet>, models: &[ModelSettings]) -> Result<Vec<UpdateSet>> {
    let mut seen: Vec<&ModelName> = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        let context = || format!("update_sets[{i}]");
        if set.models.len() < 2 {
            bail!("{}: name at least two models", context());
        }
        for m in &set.models {
            if !models.iter().any(|f| &f.model == m) {
                bail!("{}: {m} is not one of the models followed", context());
            }
            if seen.contains(&m) {
                bail!("{}: {m} is listed twice or in two sets", context());
            }
            seen.push(m);
        }
    }
    Ok(sets
        .into_iter()
        .map(|s| UpdateSet {
            models: s.models,
            mode: s.mode,
        })
        .collect())
}

impl Config {
    /// Loads and validates `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration {}", path.display()))?;
        let raw: RawConfig =
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::validate(raw, base).with_context(|| format!("{}", path.display()))
    }

    fn validate(raw: RawConfig, base: &Path) -> Result<Self> {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let fingerprint =
            ferry_shared::fingerprint::normalize_fingerprint(&raw.coordinator_fingerprint)
                .with_context(|| {
                    format!(
                        "coordinator_fingerprint `{}` is not a SHA-256 fingerprint",
                        raw.coordinator_fingerprint
                    )
                })?;
        let enrollment_token = match (raw.enrollment_token, raw.enrollment_token_file) {
            (Some(_), Some(_)) => bail!("set enrollment_token or enrollment_token_file, not both"),
            (Some(t), None) => Some(t.trim().to_owned()),
            (None, Some(f)) => {
                let f = resolve(&f);
                Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?
                        .trim()
                        .to_owned(),
                )
            }
            (None, None) => None,
        };
        if raw.trusted_keys.is_empty() && raw.root_file.is_none() {
            bail!(
                "trusted_keys is empty and no root_file is set: the agent would refuse every release"
            );
        }
        let keys = raw
            .trusted_keys
            .iter()
            .map(|k| {
                k.parse::<PublicKey>()
                    .with_context(|| format!("trusted_keys: `{k}`"))
            })
            .collect::<Result<Vec<_>>>()?;
        let health_check = raw.health_check.map(RawHealthCheck::validate).transpose()?;
        let reload = raw.reload.map(RawReload::validate).transpose()?;
        let models = match (raw.model, raw.models.is_empty()) {
            (Some(model), true) => vec![ModelSettings {
                model,
                alias: raw.alias.clone(),
                health_check,
                reload,
                application: None,
            }],
            (None, false) => raw
                .models
                .into_iter()
                .map(|m| {
                    let name = m.name.clone();
                    Ok::<_, anyhow::Error>(ModelSettings {
                        model: m.name,
                        alias: m.alias,
                        health_check: match m.health_check {
                            Some(h) => Some(h.validate()?),
                            None => health_check.clone(),
                        },
                        reload: match m.reload {
                            Some(r) => Some(r.validate()?),
                            None => reload.clone(),
                        },
                        application: m.application.map(RawApplication::validate).transpose()?,
                    })
                    .with_context(|| format!("models: {name}"))
                })
                .collect::<Result<Vec<_>>>()?,
            (Some(_), false) => bail!("give `model` or `[[models]]`, not both"),
            (None, true) => bail!("name the model to follow: `model = …` or `[[models]]`"),
        };
        for (i, m) in models.iter().enumerate() {
            if models[..i].iter().any(|o| o.model == m.model) {
                bail!("models: {} is listed twice", m.model);
            }
        }
        if models.len() > MAX_MODELS {
            bail!("models: {} listed; at most {MAX_MODELS}", models.len());
        }
        let update_sets = validate_sets(raw.update_sets, &models)?;
        if raw.mirrors.len() > 16 {
            bail!("mirrors lists {} mirrors; at most 16", raw.mirrors.len());
        }
        if raw.accelerator == Some(Accelerator::Any) {
            bail!("accelerator must be `cpu` or `gpu`");
        }
        if let Some(d) = &raw.download
            && d.schedule.iter().any(|p| p.windows.is_empty())
        {
            bail!("download.schedule: each period needs at least one window");
        }
        let hardware = if raw.detect_hardware {
            let root = raw
                .hardware_root
                .as_deref()
                .map_or_else(|| PathBuf::from("/"), resolve);
            crate::hardware::labels(&root)
        } else {
            BTreeMap::new()
        };
        let self_update = match raw.self_update {
            Some(s) if models.iter().any(|m| m.model == s.model) => bail!(
                "self_update.model is `{}`, a model the device runs: name the model that carries the agent",
                s.model
            ),
            Some(s) => Some(SelfUpdate {
                model: s.model,
                alias: s.alias.unwrap_or_else(|| raw.alias.clone()),
                prove_within: Duration::from_secs(s.prove_within_secs.max(1)),
            }),
            None => None,
        };
        let application = match raw.application {
            Some(app) => app.validate()?,
            None => Application::default(),
        };
        Ok(Self {
            coordinators: match raw.coordinator {
                Addresses::One(addr) => vec![addr],
                Addresses::Several(addrs) if addrs.is_empty() => {
                    bail!("coordinator: name at least one address")
                }
                Addresses::Several(addrs) => addrs,
            },
            server_name: raw.server_name,
            fingerprint,
            enrollment_token,
            state_dir: resolve(&raw.state_dir),
            models,
            update_sets,
            trusted: Keyring::new(keys),
            root_file: raw.root_file.as_deref().map(resolve),
            accelerator: raw.accelerator.unwrap_or(if hardware.contains_key("gpu") {
                Accelerator::Gpu
            } else {
                Accelerator::Cpu
            }),
            labels: raw.labels,
            application,
            hardware,
            download_rate: match raw.download {
                None => RateSchedule::unlimited(),
                Some(d) => RateSchedule {
                    default: d.max_rate,
                    periods: d
                        .schedule
                        .into_iter()
                        .map(|p| (p.windows, p.max_rate))
                        .collect(),
                },
            },
            maintenance: match raw.maintenance {
                None => crate::maintenance::Maintenance::default(),
                Some(m) => crate::maintenance::Maintenance {
                    windows: m.windows,
                    downloads_in_window_only: m.downloads == Downloads::InWindow,
                    lock_file: m.lock_file.as_deref().map(resolve),
                },
            },
            poll_interval: Duration::from_secs(raw.poll_interval_secs.max(1)),
            metrics_socket: raw
                .metrics_socket
                .as_deref()
                .map_or_else(|| resolve(&raw.state_dir).join("metrics.sock"), resolve),
            self_update,
            mirrors: raw.mirrors,
            mirror_timeout: Duration::from_secs(raw.mirror_timeout_secs.clamp(1, 3600)),
        })
    }

    /// What this device is, for choosing among a release's variants: its facts are the
    /// labels it announces.
    pub fn device_profile(&self) -> DeviceProfile {
        DeviceProfile {
            target: crate::TARGET.to_owned(),
            accelerator: self.accelerator,
            facts: self.all_labels(),
        }
    }

    /// The first model: the one its application's metrics speak for.
    pub fn main(&self) -> &ModelSettings {
        // Validation keeps at least one.
        &self.models[0]
    }

    /// The settings of `model`, when the device follows it as a model (not as its agent).
    pub fn settings_of(&self, model: &ModelName) -> Option<&ModelSettings> {
        self.models.iter().find(|m| &m.model == model)
    }

    /// The models the device follows, with their aliases: the ones it runs, in the order
    /// configured, then the agent's own when it updates itself.
    pub fn follows(&self) -> Vec<(ModelName, AliasName)> {
        let mut follows: Vec<(ModelName, AliasName)> = self
            .models
            .iter()
            .map(|m| (m.model.clone(), m.alias.clone()))
            .collect();
        if let Some(s) = &self.self_update {
            follows.push((s.model.clone(), s.alias.clone()));
        }
        follows
    }

    /// All labels the device announces: built-in `arch`, `target`, `os`, `accelerator`, then
    /// the operator's (which may override those), then what detection found (which the
    /// operator's do not override: a device is not mislabelled into running a build its
    /// hardware cannot; `detect_hardware = false` to label by hand), then the application's
    /// schemas.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("arch".to_owned(), std::env::consts::ARCH.to_owned()),
            ("os".to_owned(), std::env::consts::OS.to_owned()),
            ("target".to_owned(), crate::TARGET.to_owned()),
            ("accelerator".to_owned(), self.accelerator.to_string()),
        ]);
        labels.extend(self.labels.clone());
        labels.extend(self.hardware.clone());
        if let Some(sends) = &self.application.sends {
            labels.insert(SENDS_LABEL.to_owned(), sends.to_string());
        }
        if let Some(reads) = &self.application.reads {
            labels.insert(READS_LABEL.to_owned(), reads.to_string());
        }
        for m in &self.models {
            let Some(app) = &m.application else { continue };
            if let Some(sends) = &app.sends {
                labels.insert(model_label(SENDS_LABEL, &m.model), sends.to_string());
            }
            if let Some(reads) = &app.reads {
                labels.insert(model_label(READS_LABEL, &m.model), reads.to_string());
            }
        }
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::copy(&example, &path).unwrap();
        std::fs::write(dir.path().join("enrollment.token"), "secret\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.main().alias.as_str(), "prod");
        assert_eq!(config.enrollment_token.as_deref(), Some("secret"));
        assert_eq!(config.state_dir, Path::new("/var/lib/ferry"));
        assert!(config.main().health_check.is_some());
        let labels = config.all_labels();
        assert_eq!(labels[SENDS_LABEL], "tx-features/v3");
        assert_eq!(labels[READS_LABEL], "fraud-score/v1..v2");
        assert_eq!(config.all_labels()["region"], "eu-west");
    }

    #[test]
    fn a_config_without_trusted_keys_is_refused() {
        let raw: RawConfig = toml::from_str(
            r#"
            coordinator = "127.0.0.1:7400"
            coordinator_fingerprint = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            state_dir = "s"
            model = "m"
            trusted_keys = []
            "#,
        )
        .unwrap();
        let err = Config::validate(raw, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("trusted_keys"), "{err}");
    }

    /// The fields every test configuration below shares, after `coordinator = …`.
    const REST: &str = r#"
        coordinator_fingerprint = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
        state_dir = "s"
        model = "m"
        trusted_keys = ["ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"]
        "#;

    #[test]
    fn mirrors_must_be_http_bases_and_their_timeout_is_bounded() {
        let load = |lines: &str| {
            let raw: RawConfig = toml::from_str(&format!(
                "coordinator = \"127.0.0.1:7400\"\n{lines}\n{REST}"
            ))?;
            Config::validate(raw, Path::new(".")).map_err(|e| anyhow::anyhow!("{e}"))
        };
        let none = load("").unwrap();
        assert!(none.mirrors.is_empty());
        assert_eq!(none.mirror_timeout, Duration::from_secs(30));
        let some = load("mirrors = [\"http://cache.lan/ferry\"]\nmirror_timeout_secs = 0").unwrap();
        assert_eq!(some.mirrors[0].as_str(), "http://cache.lan/ferry/");
        assert_eq!(some.mirror_timeout, Duration::from_secs(1));
        let err = load("mirrors = [\"/srv/chunks\"]").unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }

    #[test]
    fn a_reload_hook_is_one_command_unit_or_url_with_its_own_options() {
        let load = |section: &str| {
            let raw: RawConfig = toml::from_str(&format!(
                "coordinator = \"127.0.0.1:7400\"\n{REST}\n[reload]\n{section}"
            ))?;
            Config::validate(raw, Path::new(".")).map_err(|e| anyhow::anyhow!("{e}"))
        };
        let triton = load(
            "url = \"http://127.0.0.1:8000/v2/repository/models/{model}/load\"\ntimeout_secs = 0",
        )
        .unwrap()
        .main()
        .reload
        .clone()
        .unwrap();
        assert_eq!(triton.timeout, Duration::from_secs(1));
        let ReloadAction::Http(call) = &triton.action else {
            panic!("{triton:?}")
        };
        assert_eq!(call.method, "POST");
        let unit = load("unit = \"llama-server.service\"\nunit_action = \"restart\"")
            .unwrap()
            .main()
            .reload
            .clone()
            .unwrap();
        assert_eq!(
            unit.action,
            ReloadAction::Unit {
                unit: "llama-server.service".into(),
                verb: UnitVerb::Restart
            }
        );
        assert_eq!(unit.timeout, Duration::from_secs(30));
        for (bad, why) in [
            ("", "set command, unit or url"),
            ("command = []", "empty"),
            ("unit = \"a b\"", "not a systemd unit name"),
            ("unit = \"--now\"", "not a systemd unit name"),
            ("url = \"ftp://x\"", "http://"),
            (
                "url = \"http://x\"\nmethod = \"DELETE\"",
                "POST, PUT or GET",
            ),
            (
                "url = \"http://x\"\nmethod = \"get\"\nbody = \"{}\"",
                "GET has no body",
            ),
            (
                "command = [\"x\"]\nurl = \"http://x\"",
                "one of command, unit and url",
            ),
            ("command = [\"x\"]\nbody = \"{}\"", "go with url"),
        ] {
            let err = load(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn several_coordinators_may_be_named_and_one_is_at_least_needed() {
        let load = |coordinator: &str| {
            let raw: RawConfig = toml::from_str(&format!("coordinator = {coordinator}\n{REST}"))?;
            Config::validate(raw, Path::new(".")).map_err(|e| anyhow::anyhow!("{e}"))
        };
        let one = load(r#""127.0.0.1:7400""#).unwrap();
        assert_eq!(one.coordinators, vec!["127.0.0.1:7400".parse().unwrap()]);
        let several = load(r#"["10.0.0.1:7400", "[fd00::2]:7400"]"#).unwrap();
        assert_eq!(several.coordinators.len(), 2);
        let none = load("[]").unwrap_err();
        assert!(none.to_string().contains("at least one address"), "{none}");
        assert!(load(r#"["not an address"]"#).is_err());
    }

    /// `text` after the settings every config needs.
    fn load_beside_the_basics(text: &str) -> Result<Config> {
        const BASE: &str = "coordinator = \"127.0.0.1:7400\"\ncoordinator_fingerprint = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\nstate_dir = \"/tmp/x\"\ntrusted_keys = [\"ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"]\n";
        let raw: RawConfig = toml::from_str(&format!("{BASE}{text}"))?;
        Config::validate(raw, Path::new(".")).map_err(|e| anyhow::anyhow!("{e:#}"))
    }

    #[test]
    fn several_models_with_their_own_checks_and_the_shared_ones_as_defaults() {
        let load = load_beside_the_basics;
        let config = load(
            "[health_check]\ncommand = [\"true\"]\n[[models]]\nname = \"tokenizer\"\n[[models]]\nname = \"detector\"\nalias = \"canary\"\n[models.health_check]\ncommand = [\"check-detector\"]\n",
        )
        .unwrap();
        let names: Vec<String> = config
            .follows()
            .iter()
            .map(|(m, a)| format!("{m}@{a}"))
            .collect();
        assert_eq!(names, ["tokenizer@prod", "detector@canary"]);
        assert_eq!(config.main().model.as_str(), "tokenizer");
        let check = |m: &str| {
            config
                .settings_of(&m.parse().unwrap())
                .and_then(|s| s.health_check.clone())
                .map(|h| h.command[0].clone())
        };
        assert_eq!(check("tokenizer").as_deref(), Some("true"));
        assert_eq!(check("detector").as_deref(), Some("check-detector"));
        for (bad, says) in [
            ("model = \"a\"\n[[models]]\nname = \"b\"\n", "not both"),
            ("", "name the model"),
            (
                "[[models]]\nname = \"a\"\n[[models]]\nname = \"a\"\n",
                "twice",
            ),
            (
                "[[models]]\nname = \"a\"\n[models.health_check]\ncommand = []\n",
                "empty",
            ),
        ] {
            let err = load(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_model_may_declare_the_schemas_its_application_speaks_to_it() {
        let config = load_beside_the_basics(
            "[application]\nreads = \"score/v1\"\n[[models]]\nname = \"tokenizer\"\n[models.application]\nreads = \"tok-out/v1..v2\"\nsends = \"text/v1\"\n[[models]]\nname = \"detector\"\n",
        )
        .unwrap();
        let labels = config.all_labels();
        assert_eq!(labels["app.reads"], "score/v1");
        assert_eq!(labels["app.reads@tokenizer"], "tok-out/v1..v2");
        assert_eq!(labels["app.sends@tokenizer"], "text/v1");
        assert!(!labels.contains_key("app.reads@detector"));
        let bad = load_beside_the_basics(
            "[[models]]\nname = \"tokenizer\"\n[models.application]\nreads = \"not a range\"\n",
        );
        assert!(bad.is_err_and(|e| e.to_string().contains("application.reads")));
    }

    #[test]
    fn a_bundle_of_the_agent_itself_or_of_a_model_not_followed_is_not_installable() {
        let config = load_beside_the_basics(
            "model = \"detector\"\n[self_update]\nmodel = \"ferry-agent\"\n",
        )
        .unwrap();
        let why = |m: &str| crate::bundle::command::not_installable(&config, &m.parse().unwrap());
        assert_eq!(why("detector"), None);
        assert!(why("ferry-agent").is_some_and(|w| w.contains("need the coordinator")));
        assert!(why("ranker").is_some_and(|w| w.contains("follows detector")));
    }

    #[test]
    fn update_sets_name_followed_models_each_in_one_set_only() {
        const MODELS: &str = "[[models]]\nname = \"tokenizer\"\n[[models]]\nname = \"detector\"\n[[models]]\nname = \"ranker\"\n";
        let config = load_beside_the_basics(&format!(
            "{MODELS}[[update_sets]]\nmodels = [\"tokenizer\", \"detector\"]\nmode = \"ordered\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.update_sets,
            [UpdateSet {
                models: vec!["tokenizer".parse().unwrap(), "detector".parse().unwrap()],
                mode: SetMode::Ordered,
            }]
        );
        let together = load_beside_the_basics(&format!(
            "{MODELS}[[update_sets]]\nmodels = [\"ranker\", \"detector\"]\n"
        ))
        .unwrap();
        assert_eq!(together.update_sets[0].mode, SetMode::Together);
        for (bad, says) in [
            (
                "[[update_sets]]\nmodels = [\"tokenizer\"]\n",
                "at least two",
            ),
            (
                "[[update_sets]]\nmodels = [\"tokenizer\", \"nope\"]\n",
                "not one of the models",
            ),
            (
                "[[update_sets]]\nmodels = [\"tokenizer\", \"detector\"]\n[[update_sets]]\nmodels = [\"ranker\", \"detector\"]\n",
                "two sets",
            ),
            (
                "[[update_sets]]\nmodels = [\"tokenizer\", \"detector\"]\nmode = \"sometimes\"\n",
                "unknown variant",
            ),
        ] {
            let err = load_beside_the_basics(&format!("{MODELS}{bad}"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
