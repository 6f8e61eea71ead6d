//! The coordinator's shared context: configuration, store, chunk transfer, live presence, secrets
//! and the channel on which alias moves are announced to open agent sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_shared::sign::{Keyring, PublicKey};
use ferry_shared::wire::DeviceId;
use ferry_shared::{AliasName, ModelName};
use tokio::sync::broadcast;

use crate::agents::transfer::Transfer;
use crate::config::Config;
use crate::fleet::summary::{FleetMetrics, Presence};
use crate::registry::admission::Pointing;
use crate::registry::error::RegistryError;
use crate::rollout::facts::Live;
use crate::rules::lifecycle::Stage;
use crate::secrets::BootstrapToken;
use crate::store::{Store, StoreError};

/// An alias moved; sessions of devices following it push the new desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasMoved {
    /// The model whose alias moved.
    pub model: ModelName,
    /// The alias that moved.
    pub alias: AliasName,
}

/// Running totals, for status and metrics.
#[derive(Default)]
pub struct Counters {
    /// Chunk payload bytes sent to agents (compressed or delta-encoded, as on the wire).
    pub bytes_served: AtomicU64,
    /// Chunks sent.
    pub chunks_served: AtomicU64,
    /// Of those, chunks sent as a delta against a window the device holds.
    pub deltas_served: AtomicU64,
    /// Fetches refused: an artifact outside the asking device's releases.
    pub fetches_refused: AtomicU64,
    /// Deltas not encoded because the asking device's encode budget was spent.
    pub encodes_refused: AtomicU64,
    /// Pre-signed chunk addresses handed to agents.
    pub chunks_presigned: AtomicU64,
}

impl Counters {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What a release must be signed by to be published.
pub enum PublisherTrust {
    /// The newest root's targets role: its threshold of the publishers it names.
    Root(Box<ferry_shared::trust::Root>),
    /// Any one of these keys (before any root exists).
    Keys(Keyring),
}

/// Everything the QUIC and HTTP sides share.
pub struct Coordinator {
    /// The configuration, as loaded and checked at start.
    pub config: Config,
    /// This coordinator's name among those sharing its database ([`Config::node`]).
    pub node: String,
    /// The database: every record and the audit trail.
    pub store: Store,
    /// Chunks, deltas and the encoder pool.
    pub transfer: Arc<Transfer>,
    /// Who is connected.
    pub presence: Presence,
    /// The one live session of each device, and clone alerts.
    pub sessions: crate::agents::sessions::Sessions,
    /// Model metrics devices report.
    pub metrics: crate::fleet::summary::FleetMetrics,
    /// Desired states and steering rollouts, computed once per change.
    pub desired: crate::agents::desired_cache::DesiredCache,
    /// The queue to the thread that merges device reports in batches (started on first use).
    pub report_queue: crate::fleet::report_queue::ReportQueue,
    /// Bearer token of the admin API (its hash).
    pub admin_token: BootstrapToken,
    /// Bearer token that may read (GET) the admin API, the dashboard and `/metrics`.
    pub viewer_token: BootstrapToken,
    /// Token a new device presents to enroll.
    pub enrollment_token: BootstrapToken,
    /// The online key that signs snapshots (its public half is in the root metadata).
    pub snapshot_key: ferry_shared::SecretKey,
    /// The last snapshot signed.
    pub snapshots: crate::registry::snapshots::SnapshotCache,
    /// Alias moves, for the tasks that prepare for them (the cache warmer); open sessions
    /// are told through [`Self::fanout`].
    pub alias_moves: broadcast::Sender<AliasMoved>,
    /// Alias moves waiting to be told to the open sessions that follow them.
    pub fanout: crate::agents::fanout::Fanout,
    /// Running totals of what was served, for status and `/metrics`.
    pub counters: Counters,
    /// How many refusals each caller may still write to the audit trail.
    pub denials: std::sync::Mutex<crate::http::refusal_budget::DenialBudget>,
    /// Held shared by uploads and publishes, exclusively by a garbage collection's apply
    /// (see [`crate::registry::gc_apply`]).
    pub gc_lock: tokio::sync::RwLock<()>,
    /// The artifacts being uploaded right now, one attempt each.
    pub uploads: crate::http::upload_attempts::InFlight,
    /// Deltas each device may still have encoded afresh.
    pub encode_budget: crate::agents::encode_budget::EncodeBudget,
    /// The cap on everything served to devices (`serve_max_rate`).
    pub serve_cap: crate::agents::serve_cap::ServeCap,
    /// Requests the admin HTTP port answered, by route and status.
    pub requests: crate::fleet::http_requests::RequestFigures,
    /// What happened since start, as counters (installs, publishes, refusals).
    pub happened: crate::fleet::event_counts::EventCounts,
    /// What each device was sent by this node, per artifact (kept in the store).
    pub transfers_by_device: crate::fleet::device_transfers::DeviceTransfers,
    config_keys: Vec<PublicKey>,
}

/// What is known live of devices (see [`Coordinator::live_view`]).
pub enum LiveView<'a> {
    /// This coordinator's own memory.
    Here(Live<'a>),
    /// Every node's, as read from the shared database.
    Fleet(Box<(FleetMetrics, Presence)>),
}

impl LiveView<'_> {
    /// The view, as the rollout facts take it.
    pub fn live(&self) -> Live<'_> {
        match self {
            LiveView::Here(live) => *live,
            LiveView::Fleet(read) => Live {
                metrics: &read.0,
                presence: &read.1,
            },
        }
    }
}

/// The coordinator's bearer tokens and online signing key.
pub struct Tokens {
    /// Signs snapshots.
    pub snapshot_key: ferry_shared::SecretKey,
    /// Everything on the admin API.
    pub admin: BootstrapToken,
    /// Reading only.
    pub viewer: BootstrapToken,
    /// Enrolling devices.
    pub enrollment: BootstrapToken,
}

impl Coordinator {
    /// Assembles the context; `config_keys` are the publisher keys named in the config file.
    pub fn new(
        config: Config,
        store: Store,
        transfer: Transfer,
        tokens: Tokens,
        config_keys: Vec<PublicKey>,
    ) -> Self {
        let Tokens {
            snapshot_key,
            admin: admin_token,
            viewer: viewer_token,
            enrollment: enrollment_token,
        } = tokens;
        let (alias_moves, _) = broadcast::channel(1024);
        let serve_cap = crate::agents::serve_cap::ServeCap::new(config.serve_max_rate);
        Self {
            node: config.node(),
            config,
            store,
            transfer: Arc::new(transfer),
            presence: Presence::default(),
            sessions: crate::agents::sessions::Sessions::default(),
            metrics: crate::fleet::summary::FleetMetrics::default(),
            desired: crate::agents::desired_cache::DesiredCache::default(),
            report_queue: Default::default(),
            admin_token,
            viewer_token,
            enrollment_token,
            snapshot_key,
            snapshots: crate::registry::snapshots::SnapshotCache::default(),
            alias_moves,
            fanout: crate::agents::fanout::Fanout::default(),
            counters: Counters::default(),
            denials: std::sync::Mutex::default(),
            gc_lock: tokio::sync::RwLock::new(()),
            uploads: Default::default(),
            encode_budget: crate::agents::encode_budget::EncodeBudget::default(),
            serve_cap,
            requests: Default::default(),
            happened: Default::default(),
            transfers_by_device: Default::default(),
            config_keys,
        }
    }

    /// What a release must be signed by to be published: once a root exists, the threshold
    /// of publishers its newest version names (as devices check); before, the trusted keys.
    pub fn publisher_trust(&self) -> Result<PublisherTrust, StoreError> {
        if let Some(newest) = self.store.roots()?.last() {
            let (root, _) = ferry_shared::trust::inspect_root(newest).map_err(|reason| {
                StoreError::Corrupt {
                    table: "trust_roots",
                    key: "newest".into(),
                    reason,
                }
            })?;
            return Ok(PublisherTrust::Root(Box::new(root)));
        }
        let mut ring = self.store.publisher_keyring()?;
        for key in &self.config_keys {
            ring.insert(*key);
        }
        Ok(PublisherTrust::Keys(ring))
    }

    /// The current signed snapshot of `model` (see [`crate::registry::snapshots::current`]).
    pub fn snapshot(
        &self,
        model: &ModelName,
        now: u64,
    ) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        crate::registry::snapshots::current(
            &self.store,
            &self.snapshots,
            &self.snapshot_key,
            model,
            now,
        )
    }

    /// Whether devices may be pointed at a release (see [`crate::registry::admission`]).
    pub fn admit(&self, pointing: &Pointing<'_>) -> Result<Option<String>, RegistryError> {
        let gated = self.config.stages.contains_key(&Stage::Production);
        crate::registry::admission::admit(&self.store, gated, pointing)
    }

    /// What it holds of each device in memory (its own sessions only: see
    /// [`Coordinator::live_view`]).
    pub fn live(&self) -> Live<'_> {
        Live {
            metrics: &self.metrics,
            presence: &self.presence,
        }
    }

    /// What is known live of every device, for rollout facts and fleet views: this
    /// coordinator's memory on an embedded store; on a shared one, what every node wrote to
    /// the database ([`crate::store::live`]), a session counting as open while its device
    /// was heard from within three heartbeats.
    pub fn live_view(&self) -> Result<LiveView<'_>, StoreError> {
        if !self.store.is_shared() {
            return Ok(LiveView::Here(self.live()));
        }
        Ok(self.live_view_from(self.store.live_records()?))
    }

    /// [`Coordinator::live_view`] of one device: on a shared database, only its row is read.
    pub fn live_view_of(&self, id: &DeviceId) -> Result<LiveView<'_>, StoreError> {
        if !self.store.is_shared() {
            return Ok(LiveView::Here(self.live()));
        }
        let record = self.store.live_record(id)?;
        Ok(self.live_view_from(record.map(|r| (id.clone(), r))))
    }

    fn live_view_from(
        &self,
        records: impl IntoIterator<Item = (DeviceId, crate::store::live::LiveRecord)>,
    ) -> LiveView<'_> {
        let metrics = FleetMetrics::default();
        let presence = Presence::default();
        let now_ms = crate::unix_now_ms();
        let fresh_ms = u64::from(self.config.heartbeat_secs)
            .saturating_mul(3_000)
            .saturating_add(2_000);
        for (id, record) in records {
            metrics.update(&id, record.metrics);
            metrics.update_values(&id, record.distributions);
            let seen = record.seen_ms / 1000;
            if record.connected && now_ms.saturating_sub(record.seen_ms) <= fresh_ms {
                presence.connected(&id, seen);
            } else {
                presence.seen(&id, seen);
            }
        }
        LiveView::Fleet(Box::new((metrics, presence)))
    }

    /// Whether this coordinator may do the work `lease` guards now: always on an embedded
    /// store; on a shared one, once it took or renewed the lease for `lease_ms` (see
    /// [`crate::store::leases`]).
    pub fn holds(&self, lease: &str, lease_ms: u64) -> Result<bool, StoreError> {
        if !self.store.is_shared() {
            return Ok(true);
        }
        self.store
            .hold_lease(lease, &self.node, crate::unix_now_ms(), lease_ms)
    }

    /// Tells open sessions (and the cache warmer) that an alias moved.
    pub fn announce(&self, model: &ModelName, alias: &AliasName) {
        self.happened.alias_moved();
        self.tell_followers(model, alias);
    }

    /// Recomputes what the devices following `model`'s `alias` should run and tells them
    /// (a device pinned or unpinned among them).
    pub fn tell_followers(&self, model: &ModelName, alias: &AliasName) {
        self.desired.invalidate();
        self.fanout.announce((model.clone(), alias.clone()));
        // No receivers means no open sessions; nothing to tell.
        let _ = self.alias_moves.send(AliasMoved {
            model: model.clone(),
            alias: alias.clone(),
        });
    }
}

/// How long a lease renewed every `tick` lives: three ticks and a second, so that one slow
/// tick does not lose it, and a dead holder loses it within seconds.
pub fn lease_ms(tick: std::time::Duration) -> u64 {
    u64::try_from(tick.as_millis())
        .unwrap_or(u64::MAX / 4)
        .saturating_mul(3)
        .saturating_add(1000)
}
