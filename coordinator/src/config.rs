//! The coordinator's configuration: a TOML file (every field documented in
//! `coordinator/coordinator.example.toml`), overridden by command-line flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::rules::gc::Retention;
use crate::rules::lifecycle::{OnPromote, Stage, StagePolicy};

/// Coordinator settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the database, blobs, TLS material and tokens.
    pub data_dir: PathBuf,
    /// UDP address of the agents' QUIC endpoint.
    pub quic_listen: SocketAddr,
    /// TCP address of the admin HTTP API.
    pub http_listen: SocketAddr,
    /// Whether the admin API speaks TLS (`auto`: unless `http_listen` is a loopback address).
    pub admin_tls: AdminTls,
    /// PEM certificate chain for the admin API (with `admin_tls_key`); default: the
    /// coordinator's own self-signed certificate, which ferryctl pins by fingerprint.
    pub admin_tls_cert: Option<PathBuf>,
    /// PEM private key of `admin_tls_cert`.
    pub admin_tls_key: Option<PathBuf>,
    /// DNS names and IP addresses written into the TLS certificate when it is first created.
    pub server_names: Vec<String>,
    /// How often agents report when nothing happens, in seconds.
    pub heartbeat_secs: u32,
    /// A device silent for longer than this counts as stale in fleet status, in seconds.
    pub stale_after_secs: u64,
    /// zstd level for stored artifacts (1–19; higher is smaller and slower to publish).
    pub compression_level: i32,
    /// Largest artifact accepted, in bytes.
    pub max_artifact_bytes: u64,
    /// zstd level for chunk deltas sent to agents (1–19; computed once per version pair and
    /// cached, so the highest level usually pays).
    pub delta_level: i32,
    /// Threads encoding deltas at once; 0 means one per CPU core.
    pub encode_workers: usize,
    /// Whether a release that an alias devices follow (or a rollout) targets gets its first
    /// install precomputed at `delta_level`, each chunk against the 8 MiB before it: about
    /// what zstd sends for the whole file, where the stored chunks send 15-20 % more. Costs
    /// about 3.7 times zstd -19's CPU per byte of the release, once, in the background.
    pub precompute_first_installs: bool,
    /// Publisher keys (`ed25519:<hex>`) trusted in addition to those added with
    /// `ferryctl keys trust`.
    pub trusted_publishers: Vec<String>,
    /// How often the rollout engine evaluates active rollouts, in milliseconds.
    pub rollout_tick_ms: u64,
    /// How often a sample of the fragmentation is kept for its history, in seconds (read
    /// under its older name `fragmentation_snapshot_secs` too: "snapshot" names signed TUF
    /// metadata).
    #[serde(alias = "fragmentation_snapshot_secs")]
    pub fragmentation_sample_secs: u64,
    /// How long fragmentation samples are kept, in days.
    pub fragmentation_retention_days: u64,
    /// What a release must show to enter each stage (`[stages.production]`, …).
    pub stages: BTreeMap<Stage, StagePolicy>,
    /// How long releases in a stage keep their bytes (`[retention.archived]`, …).
    pub retention: BTreeMap<Stage, Retention>,
    /// Where records are kept (`[store]`).
    pub store: StoreSettings,
    /// This coordinator's name among those sharing one database (who holds a lease, in the
    /// audit trail); default: the host's name and the admin API's port.
    pub node_name: Option<String>,
    /// Where else agents may fetch chunks (`[mirrors]`).
    pub mirrors: MirrorSettings,
    /// The most this coordinator serves to all devices together (`200 MiB/s`, `1 Gbit/s`;
    /// unlimited by default). Mirrors and pre-signed addresses are not counted.
    pub serve_max_rate: ferry_shared::throttle::Rate,
    /// Update windows by cohort (`[[maintenance]]`): the first whose cohort matches a device
    /// gives it windows its switches must also fall in (device-local time).
    pub maintenance: Vec<CohortWindows>,
    /// Models whose bytes leave the coordinator only over a device's own session or sealed
    /// for named devices: no mirror or pre-signed address is handed out for their
    /// artifacts, and their offline bundles must be sealed (`--seal-for`).
    pub confidential_models: Vec<ferry_shared::ModelName>,
}

/// One `[[maintenance]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohortWindows {
    /// The devices it covers: a label selector (`region=eu, site in (a, b)`).
    #[serde(deserialize_with = "selector")]
    pub cohort: ferry_shared::rollout::Selector,
    /// Their windows.
    pub windows: Vec<ferry_shared::window::Window>,
}

fn selector<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<ferry_shared::rollout::Selector, D::Error> {
    let text = String::deserialize(d)?;
    ferry_shared::rollout::Selector::parse(&text).map_err(serde::de::Error::custom)
}

/// Where agents may fetch chunk frames other than from a coordinator: every chunk is checked
/// against the signed manifest on the device, so these need no trust.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorSettings {
    /// Mirrors holding copies of the chunk store (a CDN in front of the bucket, a LAN cache, a
    /// static server over a copy of the chunk directory), told to every agent that speaks
    /// protocol 5; each agent tries its own configured mirrors first.
    pub urls: Vec<ferry_shared::mirror::MirrorBase>,
    /// Hand agents pre-signed addresses of the frames in the S3 bucket (`store.chunks`), so
    /// they fetch whole chunks from the bucket instead of through a coordinator. The addresses
    /// name `store.s3_endpoint`, which the agents must then reach.
    pub presign: bool,
    /// How long a pre-signed address stays valid (seconds, 60 to 604,800).
    pub presign_secs: u64,
}

impl Default for MirrorSettings {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            presign: false,
            presign_secs: 900,
        }
    }
}

impl MirrorSettings {
    /// Whether agents are told of any place other than the coordinators.
    pub fn any(&self) -> bool {
        self.presign || !self.urls.is_empty()
    }
}

/// Where the coordinator keeps its records.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// A PostgreSQL database (`postgres://USER@HOST:PORT/DATABASE`) shared by every
    /// coordinator of the fleet; unset, records stay in the embedded `data_dir/ferry.redb`.
    pub metadata: Option<String>,
    /// A file holding the PostgreSQL password, so the configuration file need not (its
    /// first line; the address's own password, if any, is replaced).
    pub metadata_password_file: Option<PathBuf>,
    /// The certificate authority (PEM) the database server's certificate chains to: with
    /// it, connections use TLS and verify the server by the address's host name (add
    /// `?sslmode=require` to the address to refuse a server without TLS).
    pub metadata_ca_file: Option<PathBuf>,
    /// Where chunks are kept when several coordinators share them: an S3-compatible bucket
    /// (`s3://BUCKET/PREFIX/`, with `s3_endpoint`) or a directory (a network file system
    /// mounted on each); unset, chunks stay in `data_dir/chunks`. Uploads in progress stay
    /// in each coordinator's own data directory.
    pub chunks: Option<String>,
    /// The S3 service's address (`https://s3.eu-west-1.amazonaws.com`, `http://10.0.0.5:8333`).
    pub s3_endpoint: Option<String>,
    /// The region S3 requests are signed for.
    pub s3_region: Option<String>,
    /// A file holding the S3 access key id (first line) and secret key (second line); else
    /// the environment's `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub s3_credentials_file: Option<PathBuf>,
}

/// Where chunks are kept, as configured.
#[derive(Debug)]
pub enum ChunkPlace {
    /// In `data_dir/chunks`, this coordinator's own.
    Own,
    /// In a directory several coordinators share.
    Directory(PathBuf),
    /// In an S3-compatible bucket.
    S3(crate::store::chunks::s3::S3Location),
}

impl StoreSettings {
    /// Where chunks are kept, with the S3 credentials read when they are in a bucket.
    pub fn chunk_place(&self) -> Result<ChunkPlace, ConfigError> {
        let Some(chunks) = &self.chunks else {
            return Ok(ChunkPlace::Own);
        };
        let Some(rest) = chunks.strip_prefix("s3://") else {
            return Ok(ChunkPlace::Directory(PathBuf::from(chunks)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = match prefix {
            "" => String::new(),
            p if p.ends_with('/') => p.to_owned(),
            p => format!("{p}/"),
        };
        let endpoint = self.s3_endpoint.clone().ok_or_else(|| {
            ConfigError::Invalid("store.chunks names a bucket: store.s3_endpoint is needed".into())
        })?;
        let (access_key, secret_key) = match &self.s3_credentials_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let mut lines = text.lines().map(str::trim);
                match (lines.next(), lines.next()) {
                    (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                        (id.to_owned(), secret.to_owned())
                    }
                    _ => {
                        return Err(ConfigError::Invalid(format!(
                            "{}: the access key id on the first line, the secret on the second",
                            path.display()
                        )));
                    }
                }
            }
            None => match (
                std::env::var("AWS_ACCESS_KEY_ID"),
                std::env::var("AWS_SECRET_ACCESS_KEY"),
            ) {
                (Ok(id), Ok(secret)) => (id, secret),
                _ => {
                    return Err(ConfigError::Invalid(
                        "store.chunks names a bucket: give store.s3_credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
                    ));
                }
            },
        };
        Ok(ChunkPlace::S3(crate::store::chunks::s3::S3Location {
            endpoint,
            bucket: bucket.to_owned(),
            prefix,
            region: self.s3_region.clone().unwrap_or_else(|| "us-east-1".into()),
            access_key,
            secret_key,
        }))
    }

    /// The PostgreSQL address configured, if any, and how to reach it.
    pub fn postgres(&self) -> Result<Option<(String, crate::store::PostgresAccess)>, ConfigError> {
        let Some(url) = &self.metadata else {
            return Ok(None);
        };
        let ca_pem = match &self.metadata_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let password = match &self.metadata_password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
            None => None,
        };
        Ok(Some((
            url.clone(),
            crate::store::PostgresAccess { password, ca_pem },
        )))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./ferry-data"),
            quic_listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 7401)),
            admin_tls: AdminTls::Auto,
            admin_tls_cert: None,
            admin_tls_key: None,
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            heartbeat_secs: 15,
            stale_after_secs: 300,
            compression_level: 9,
            max_artifact_bytes: 64 * 1024 * 1024 * 1024,
            delta_level: 19,
            encode_workers: 0,
            precompute_first_installs: true,
            trusted_publishers: Vec::new(),
            rollout_tick_ms: 5000,
            fragmentation_sample_secs: 3600,
            fragmentation_retention_days: 90,
            stages: BTreeMap::new(),
            retention: BTreeMap::new(),
            store: StoreSettings::default(),
            node_name: None,
            mirrors: MirrorSettings::default(),
            serve_max_rate: ferry_shared::throttle::Rate::Unlimited,
            maintenance: Vec::new(),
            confidential_models: Vec::new(),
        }
    }
}

/// Whether the admin API is served over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AdminTls {
    /// TLS, unless the API listens on a loopback address only.
    Auto,
    /// Always TLS.
    On,
    /// Plain HTTP, also on a network address (behind a TLS-terminating proxy on the same
    /// host, say); bearer tokens then cross that network in clear text.
    Off,
}

impl Config {
    /// Whether the admin API speaks TLS, as configured for the address it listens on.
    pub fn admin_speaks_tls(&self) -> bool {
        match self.admin_tls {
            AdminTls::On => true,
            AdminTls::Off => false,
            AdminTls::Auto => !self.http_listen.ip().is_loopback(),
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Bad TOML or a bad value.
    #[error("{path}: {source}")]
    Parse {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: Box<toml::de::Error>,
    },
    /// A value out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Loads a TOML file; missing fields take their defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// This coordinator's name among those sharing one database (see [`Config::node_name`]).
    pub fn node(&self) -> String {
        if let Some(name) = &self.node_name {
            return name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "coordinator".into());
        format!("{host}:{}", self.http_listen.port())
    }

    /// Checks ranges and settings that go together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.admin_tls_cert.is_some() != self.admin_tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "admin_tls_cert and admin_tls_key go together: give both or neither".into(),
            ));
        }
        if !(1..=19).contains(&self.compression_level) {
            return Err(ConfigError::Invalid(format!(
                "compression_level {} is outside 1..=19",
                self.compression_level
            )));
        }
        if !(1..=19).contains(&self.delta_level) {
            return Err(ConfigError::Invalid(format!(
                "delta_level {} is outside 1..=19",
                self.delta_level
            )));
        }
        if self.heartbeat_secs == 0 {
            return Err(ConfigError::Invalid(
                "heartbeat_secs must be at least 1".into(),
            ));
        }
        if self.fragmentation_sample_secs == 0 || self.fragmentation_retention_days == 0 {
            return Err(ConfigError::Invalid(
                "fragmentation_sample_secs and fragmentation_retention_days must be at least 1"
                    .into(),
            ));
        }
        if self.rollout_tick_ms < 50 {
            return Err(ConfigError::Invalid(
                "rollout_tick_ms must be at least 50".into(),
            ));
        }
        if let Some(url) = &self.store.metadata
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(format!(
                "store.metadata: `{}` is not a postgres:// address (PostgreSQL is the one shared engine; leave it unset for the embedded one)",
                url.split('@').next_back().unwrap_or_default()
            )));
        }
        if self.store.metadata_password_file.is_some() && self.store.metadata.is_none() {
            return Err(ConfigError::Invalid(
                "store.metadata_password_file needs store.metadata".into(),
            ));
        }
        if !(60..=604_800).contains(&self.mirrors.presign_secs) {
            return Err(ConfigError::Invalid(format!(
                "mirrors.presign_secs {} is outside 60..=604800 (S3 signs for at most 7 days)",
                self.mirrors.presign_secs
            )));
        }
        if self.mirrors.presign
            && !self
                .store
                .chunks
                .as_deref()
                .is_some_and(|c| c.starts_with("s3://"))
        {
            return Err(ConfigError::Invalid(
                "mirrors.presign needs chunks in an S3 bucket (store.chunks = \"s3://…\")".into(),
            ));
        }
        if self.mirrors.urls.len() > 16 {
            return Err(ConfigError::Invalid(format!(
                "mirrors.urls lists {} mirrors; at most 16",
                self.mirrors.urls.len()
            )));
        }
        if self.retention.contains_key(&Stage::Production) {
            return Err(ConfigError::Invalid(
                "retention.production: production releases always keep their bytes".into(),
            ));
        }
        for (stage, policy) in &self.stages {
            policy
                .validate(*stage)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if let (OnPromote::Rollout, Some(file)) = (policy.on_promote, &policy.rollout_plan) {
                // A broken plan is found now, not at the first promotion.
                let (model, version) = ("config-check".parse(), "0.0.0".parse());
                if let (Ok(model), Ok(version)) = (model, version) {
                    crate::registry::rollout_plans::promotion_plan(file, &model, &version)
                        .map_err(ConfigError::Invalid)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_loads_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("coordinator.example.toml");
        let config = Config::load(&path).unwrap();
        let defaults = Config::default();
        assert_eq!(config.quic_listen, defaults.quic_listen);
        assert_eq!(config.http_listen, defaults.http_listen);
        assert_eq!(config.heartbeat_secs, defaults.heartbeat_secs);
        assert_eq!(config.compression_level, defaults.compression_level);
        assert!(config.precompute_first_installs && defaults.precompute_first_installs);
        let off: Config = toml::from_str("precompute_first_installs = false").unwrap();
        assert!(!off.precompute_first_installs);
        assert!(defaults.stages.is_empty(), "no policies by default");
        let production = &config.stages[&Stage::Production];
        assert_eq!(production.approvals, 2);
        assert_eq!(production.metrics.len(), 3);
        assert_eq!(production.on_promote, OnPromote::Alias);
        assert!(config.stages.contains_key(&Stage::Staging));
        assert_eq!(
            config.stages[&Stage::Archived]
                .after_days
                .get(&Stage::Deprecated),
            Some(&30.0)
        );
    }

    #[test]
    fn a_misplaced_promotion_action_or_a_missing_plan_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(&path).map(|_| ()).unwrap_err().to_string()
        };
        assert!(
            load("[stages.staging]\non_promote = \"alias\"").contains("[stages.production] only")
        );
        assert!(
            load("[stages.production]\non_promote = \"rollout\"\nrollout_plan = \"/nonexistent.json\"")
                .contains("cannot read the rollout plan")
        );
        assert!(load("[stages.prod]\napprovals = 1").contains("prod"));
    }

    /// Renamed settings keep reading the files older builds were configured with.
    #[test]
    fn the_older_name_of_the_fragmentation_sample_interval_still_reads() {
        let old: Config = toml::from_str("fragmentation_snapshot_secs = 60").unwrap();
        assert_eq!(old.fragmentation_sample_secs, 60);
        let new: Config = toml::from_str("fragmentation_sample_secs = 90").unwrap();
        assert_eq!(new.fragmentation_sample_secs, 90);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<Config>("quic_lsiten = \"1.2.3.4:5\"").unwrap_err();
        assert!(err.to_string().contains("quic_lsiten"));
    }

    #[test]
    fn mirrors_are_checked_at_load() {
        let load = |text: &str| toml::from_str::<Config>(text).map_err(|e| e.to_string());
        let config = load("[mirrors]\nurls = [\"http://cache.lan:8080/ferry\"]").unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.mirrors.urls[0].as_str(),
            "http://cache.lan:8080/ferry/"
        );
        assert!(config.mirrors.any() && !Config::default().mirrors.any());
        let err = load("[mirrors]\nurls = [\"file:///srv/chunks\"]").unwrap_err();
        assert!(err.contains("http://"), "{err}");
        let presign = load("[mirrors]\npresign = true").unwrap();
        let err = presign.validate().unwrap_err().to_string();
        assert!(err.contains("S3 bucket"), "{err}");
        let long = load(
            "[store]\nchunks = \"s3://b/\"\n[mirrors]\npresign = true\npresign_secs = 1000000",
        )
        .unwrap();
        let err = long.validate().unwrap_err().to_string();
        assert!(err.contains("presign_secs"), "{err}");
    }

    #[test]
    fn chunks_go_to_a_bucket_a_shared_directory_or_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("s3");
        std::fs::write(&credentials, "AKID\nsecret\n").unwrap();
        let settings = |chunks: &str, endpoint: bool| StoreSettings {
            chunks: Some(chunks.into()),
            s3_endpoint: endpoint.then(|| "http://127.0.0.1:8333".into()),
            s3_credentials_file: Some(credentials.clone()),
            ..StoreSettings::default()
        };
        match settings("s3://models/ferry", true).chunk_place().unwrap() {
            ChunkPlace::S3(at) => {
                assert_eq!(
                    (at.bucket.as_str(), at.prefix.as_str()),
                    ("models", "ferry/")
                );
                assert_eq!(
                    (at.access_key.as_str(), at.secret_key.as_str()),
                    ("AKID", "secret")
                );
                assert_eq!(at.region, "us-east-1");
                assert!(!format!("{at:?}").contains("secret"), "{at:?}");
            }
            other => panic!("{other:?}"),
        }
        match settings("s3://models", true).chunk_place().unwrap() {
            ChunkPlace::S3(at) => assert_eq!(at.prefix, ""),
            other => panic!("{other:?}"),
        }
        let err = settings("s3://models", false).chunk_place().unwrap_err();
        assert!(err.to_string().contains("s3_endpoint"), "{err}");
        assert!(matches!(
            settings("/srv/ferry/chunks", false).chunk_place().unwrap(),
            ChunkPlace::Directory(_)
        ));
        assert!(matches!(
            StoreSettings::default().chunk_place().unwrap(),
            ChunkPlace::Own
        ));
        std::fs::write(&credentials, "only one line\n").unwrap();
        let err = settings("s3://models", true).chunk_place().unwrap_err();
        assert!(err.to_string().contains("second"), "{err}");
    }
}
