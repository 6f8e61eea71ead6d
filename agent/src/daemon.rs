//! The agent daemon: the edge around the pure [`Updater`]. It reconciles the state directory,
//! keeps the coordinator session up, admits desired states, carries out the updater's actions
//! (download, switch, health check, rollback, commit) and feeds their outcomes back, persists
//! what must survive a restart, and reports.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_shared::ModelName;
use ferry_shared::variant_choice::DeviceProfile;
use ferry_shared::wire::{DeviceReport, ErrorKind, EventKind, InstallError};
use quinn::{Connection, Endpoint};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

mod gate;
mod local;
mod offline;
mod trial;

use crate::config::Config;
use crate::handover::Trial;
use crate::session::{self, FromSession, SessionParams};
use crate::slots::SlotLayout;
use crate::state::{Locked, StateFile, TransferStats, UpdateRecord};
use crate::updater::{Admitted, Effect, Event, Trust, Updater, admit};
use crate::{backoff, fetch, health, identity, notify, tls, unix_now};
use ferry_shared::trust::TrustState;

/// How often the daemon looks for changes made on the device (local rollback) and pings the
/// watchdog when nothing else happens.
const TICK: Duration = Duration::from_secs(1);

/// Where the trust state (root walked to, snapshot version seen) is kept.
const TRUST_FILE: &str = "trust.json";

/// The device's trust at start: the saved trust state, else the configured initial root,
/// else the configured publisher keys.
fn load_trust(config: &Config) -> Result<Trust> {
    let Some(root_file) = &config.root_file else {
        return Ok(Trust::Keys(config.trusted.clone()));
    };
    let saved = config.state_dir.join(TRUST_FILE);
    if saved.exists() {
        let bytes =
            std::fs::read(&saved).with_context(|| format!("cannot read {}", saved.display()))?;
        let state: TrustState = crate::stored::decode(&bytes, crate::stored::TRUST_FORMAT)
            .with_context(|| format!("cannot use {}", saved.display()))?;
        return Ok(Trust::Metadata(state));
    }
    let bytes = std::fs::read(root_file)
        .with_context(|| format!("cannot read the root metadata {}", root_file.display()))?;
    let state = TrustState::from_initial_root(&bytes)
        .with_context(|| format!("{} is not a valid root", root_file.display()))?;
    Ok(Trust::Metadata(state))
}

/// How often the model metrics are saved when they changed (flash wears; a crash loses at
/// most this much of them).
const METRICS_SAVE_EVERY: Duration = Duration::from_secs(60);

/// One model the device follows: its pure updater and what the install in progress did.
struct Follower {
    model: ModelName,
    updater: Updater,
    /// When the current install started and from which version.
    started: Option<(Instant, Option<ferry_shared::Version>)>,
    /// What downloading the version being installed moved so far, over its attempts.
    transfer: Arc<std::sync::Mutex<(Option<ferry_shared::Version>, TransferStats)>>,
    /// Start-up reconciliation rolled back a switch the last run left unconfirmed: the model
    /// server may still hold the version left, so it is told to load `current` again.
    rolled_back_at_start: bool,
    /// The offline bundle the install in progress came from.
    bundle: Option<std::path::PathBuf>,
}

/// Which follower an internal event is for (an index into `Daemon::followers`).
type FollowerId = usize;

/// The follower of the model the device runs; the agent's own, when it updates itself, comes
/// after it.
const MAIN: FollowerId = 0;

struct Daemon {
    config: Arc<Config>,
    /// What releases are checked against; with metadata, persisted in `STATE/trust.json`.
    trust: Trust,
    layout: SlotLayout,
    state: StateFile,
    /// The models followed, in the order of [`Config::follows`].
    followers: Vec<Follower>,
    profile: DeviceProfile,
    /// The download cap every download passes.
    throttle: Arc<crate::throttle::Throttle>,
    /// The application's update lock (taken over the metrics socket).
    app_lock: Arc<crate::maintenance::AppLock>,
    /// The gate last fed to each updater: whether switches (and downloads) wait, and why.
    gates: Vec<(Option<ferry_shared::wire::DeferReason>, bool)>,
    /// The update sets (`[[update_sets]]`): models that switch as one.
    sets: Vec<gate::Set>,
    /// The device's identity key (it opens bundles sealed for this device).
    identity: Arc<ferry_shared::SecretKey>,
    /// Offline bundles admitted, by the model and version they install.
    bundles: std::collections::HashMap<(ModelName, ferry_shared::Version), std::path::PathBuf>,
    /// The coordinator's rules for this device: its cohort's windows, overrides.
    policy: ferry_shared::wire::Policy,
    /// The switches held back now, as the session reports them.
    deferred: Arc<std::sync::Mutex<Vec<ferry_shared::wire::Deferral>>>,
    reports: watch::Sender<DeviceReport>,
    /// Model metrics from the application, per model; told which version serves each.
    metrics: Arc<crate::metrics::Intakes>,
    connection: watch::Receiver<Option<Connection>>,
    internal: mpsc::Sender<(FollowerId, Event)>,
    last_down: Option<String>,
    /// Why the agent state or the trust state could not be written, while it cannot: the
    /// change is kept in memory, retried on every tick, and reported to the coordinator.
    unsaved: Option<(String, u64)>,
    /// The trust state changed but could not be written yet.
    trust_unsaved: bool,
    /// The follower of the agent's own model, with `[self_update]`.
    agent_follower: Option<FollowerId>,
    /// This binary is a new agent on trial: it must prove itself (see [`crate::handover`]).
    trial: Option<Trial>,
    /// Whether the proof of the trial is under way.
    proving: bool,
    proofs: mpsc::Sender<Result<(), String>>,
    /// A new agent binary is installed and waits for the other models to settle before the
    /// daemon stops and hands over to it.
    handover_pending: bool,
}

/// How the daemon ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// On SIGINT or SIGTERM.
    Stopped,
    /// To hand over to a new agent binary, whose trial is written (see [`crate::handover`]).
    HandOver,
}

/// Creates the state directory and takes its daemon lock, held for as long as this process
/// runs the daemon (and across its hand-overs to newer binaries, which start by taking it
/// again); an error when another daemon holds it. Taken before the agent's own updates are
/// looked at: a second `ferry-agent run` must not heal or launch a trial under a running one.
pub fn hold_state_dir(config: &Config) -> Result<Locked> {
    crate::access::create_shared_dir(&config.state_dir, &config.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            config.state_dir.display()
        )
    })?;
    match StateFile::new(&config.state_dir).daemon_lock()? {
        Some(running) => Ok(running),
        None => anyhow::bail!(
            "another ferry-agent is running on {}: one daemon per state directory",
            config.state_dir.display()
        ),
    }
}

/// Runs the daemon until SIGINT or SIGTERM, or until it hands over to a new agent binary.
/// With `trial`, this binary is that new agent and must prove itself by the trial's deadline;
/// failing that, it returns an error (and whatever restarts it heals, see
/// [`crate::handover`]).
///
/// `_running` is the state directory's daemon lock ([`hold_state_dir`]), taken by the caller
/// before anything in the directory was looked at.
pub async fn run(config: Config, trial: Option<Trial>, _running: &Locked) -> Result<Outcome> {
    let config = Arc::new(config);
    let (key, device_id, created) = identity::load_or_create(&config.state_dir)?;
    let key = Arc::new(key);
    if created {
        info!(device = %device_id, "created the device identity");
    }
    let layout = SlotLayout::new(config.state_dir.clone());
    let state = StateFile::new(&config.state_dir);
    let mut followers = Vec::new();
    for (model, _) in config.follows() {
        let on_trial = trial.as_ref().is_some_and(|t| t.model == model);
        followers.push(start_follower(&layout, &state, model, on_trial)?);
    }
    let sets: Vec<gate::Set> = config
        .update_sets
        .iter()
        .map(|set| gate::Set {
            mode: set.mode,
            members: set
                .models
                .iter()
                .filter_map(|m| followers.iter().position(|f| &f.model == m))
                .collect(),
        })
        .collect();
    for f in sets.iter().flat_map(|s| &s.members) {
        followers[*f].updater.join_update_set();
    }
    let agent_follower = config
        .self_update
        .as_ref()
        .and_then(|s| followers.iter().position(|f| f.model == s.model));
    let model = config.main().model.clone();
    info!(
        device = %device_id,
        model = %model,
        current = %followers[MAIN].updater.slots().current.as_ref().map_or("-".into(), ToString::to_string),
        previous = %followers[MAIN].updater.slots().previous.as_ref().map_or("-".into(), ToString::to_string),
        "agent started"
    );
    notify::ready();

    let (reports, report_rx) = watch::channel(DeviceReport::default());
    let models: Vec<ModelName> = config.models.iter().map(|m| m.model.clone()).collect();
    let metrics = crate::metrics::Intakes::load(&models, |m| layout.metrics_path(m));
    let app_lock = Arc::new(crate::maintenance::AppLock::default());
    let metrics_task = tokio::spawn({
        let (path, metrics, lock) = (
            config.metrics_socket.clone(),
            metrics.clone(),
            app_lock.clone(),
        );
        async move { crate::metrics::serve(&path, metrics, lock).await }
    });
    let deferred = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (conn_tx, connection) = watch::channel(None);
    let (session_tx, mut session_rx) = mpsc::channel(64);
    let (internal, mut internal_rx) = mpsc::channel(64);
    let (proofs, mut proofs_rx) = mpsc::channel(1);
    let trust = load_trust(&config)?;
    let deadline = trial.as_ref().map(|t| {
        let left = t.deadline.saturating_sub(unix_now());
        info!(version = %t.version, "this agent is on trial: it has {left}s to connect, report and pass the health check");
        tokio::time::Instant::now() + Duration::from_secs(left)
    });
    let mut daemon = Daemon {
        trust,
        profile: config.device_profile(),
        throttle: Arc::new(crate::throttle::Throttle::new(config.download_rate.clone())),
        app_lock,
        gates: vec![(None, false); followers.len()],
        sets,
        bundles: Default::default(),
        identity: key.clone(),
        policy: Default::default(),
        deferred: deferred.clone(),
        config: config.clone(),
        layout,
        state,
        followers,
        reports,
        connection,
        internal,
        last_down: None,
        unsaved: None,
        trust_unsaved: false,
        metrics: metrics.clone(),
        agent_follower,
        trial,
        proving: false,
        proofs,
        handover_pending: false,
    };
    for follower in 0..daemon.followers.len() {
        if daemon.followers[follower].rolled_back_at_start && Some(follower) != agent_follower {
            let current = daemon.followers[follower].updater.slots().current.clone();
            daemon.reload_after_rollback(follower, current);
        }
    }
    daemon.check_gate();
    daemon.publish_report();

    let endpoint = client_endpoint(&config)?;
    let (client, pinned) = tls::client_config(&config.fingerprint, &key)?;
    let session = tokio::spawn(session::run(
        SessionParams {
            config: config.clone(),
            key: key.clone(),
            endpoint: endpoint.clone(),
            client,
            pinned,
            metrics,
            deferred,
        },
        report_rx,
        session_tx,
        conn_tx,
    ));

    let watchdog = notify::watchdog_interval();
    let mut tick = tokio::time::interval(watchdog.map_or(TICK, |w| w.min(TICK)));
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let mut save_metrics = tokio::time::interval(METRICS_SAVE_EVERY);
    let save = |intakes: &crate::metrics::Intakes| intakes.save();
    let trial_over = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let mut trial_over = std::pin::pin!(trial_over);
    let mut outcome = Outcome::Stopped;
    let mut failed = None;
    loop {
        tokio::select! {
            _ = save_metrics.tick() => save(&daemon.metrics),
            Some(message) = session_rx.recv() => {
                daemon.on_session(message);
                daemon.check_gate();
            }
            Some((follower, event)) = internal_rx.recv() => {
                daemon.feed(follower, event);
                daemon.check_gate();
            }
            Some(proof) = proofs_rx.recv() => match proof {
                Ok(()) => daemon.confirm_trial(),
                Err(why) => {
                    failed = Some(anyhow::anyhow!("this new agent failed its health check: {why}"));
                    break;
                }
            },
            _ = &mut trial_over, if daemon.trial.is_some() => {
                failed = Some(anyhow::anyhow!(
                    "this new agent did not connect, report and pass the health check in time"
                ));
                break;
            }
            _ = tick.tick() => {
                if watchdog.is_some() {
                    notify::watchdog();
                }
                daemon.look_for_local_changes();
                daemon.take_bundle();
                daemon.check_gate();
                daemon.keep_state_durable();
                if daemon.ready_to_hand_over() {
                    outcome = Outcome::HandOver;
                    break;
                }
            }
            signal = &mut shutdown => {
                signal?;
                break;
            }
        }
    }
    if outcome == Outcome::HandOver {
        // Not STOPPING=1: systemd would take the service for one going down, and the new
        // binary, exec'd in this same process, carries on as the service's main process.
        info!("stopping to hand over to the new agent");
    } else {
        info!("stopping");
        notify::stopping();
    }
    save(&daemon.metrics);
    session.abort();
    metrics_task.abort();
    let _ = std::fs::remove_file(&config.metrics_socket);
    endpoint.close(0u32.into(), b"agent stopping");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    match failed {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// Reconciles `model`'s slots after whatever stopped the last run, and makes its updater
/// from them and from what the state file remembers.
/// With `keep_probation`, a switch in probation stays so (a new agent binary on trial).
fn start_follower(
    layout: &SlotLayout,
    state: &StateFile,
    model: ModelName,
    keep_probation: bool,
) -> Result<Follower> {
    let reconciled = {
        let _lock = state.lock()?;
        let r = layout
            .reconcile_keeping(&model, keep_probation)
            .with_context(|| format!("cannot reconcile {model} in {}", layout.root().display()))?;
        if let Some(version) = &r.interrupted {
            let error = InstallError {
                version: version.clone(),
                kind: ErrorKind::HealthCheck,
                message:
                    "the agent stopped before the health check confirmed this version; rolled back"
                        .into(),
                at: unix_now(),
            };
            state.update_locked(|s| {
                s.push_event(&model, EventKind::InstallFailed(error.clone()), unix_now());
                s.model(&model).last_error = Some(error.clone());
            })?;
        }
        r
    };
    for note in &reconciled.removed {
        info!(%model, "start-up reconciliation: {note}");
    }
    let memory = state
        .load()?
        .models
        .get(&model)
        .cloned()
        .unwrap_or_default();
    let candidate = layout
        .candidate(&model)
        .with_context(|| format!("cannot read the candidate of {model}"))?;
    let updater = Updater::new(
        model.clone(),
        reconciled.slots,
        candidate,
        memory.holds,
        memory.last_error,
    );
    Ok(Follower {
        model,
        updater,
        started: None,
        transfer: Arc::default(),
        rolled_back_at_start: reconciled.interrupted.is_some(),
        bundle: None,
    })
}

fn client_endpoint(config: &Config) -> Result<Endpoint> {
    let bound = client_socket(&config.coordinators)?;
    let runtime = quinn::default_runtime().context("no async runtime for QUIC")?;
    Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        bound.socket,
        runtime,
    )
    .context("cannot open a UDP socket for QUIC")
}

/// The UDP socket QUIC runs on. Its receive buffer holds what the coordinator may have in
/// flight on a fetch stream, so a burst that arrives while the agent writes a chunk to disk
/// waits in the kernel instead of being dropped: with the kernel's default (about 200 KiB) a
/// 512 MiB download lost 500 datagrams, each loss halving the coordinator's sending window,
/// and took 3.1 s instead of 2.6.
fn client_socket(coordinators: &[std::net::SocketAddr]) -> Result<ferry_shared::udp::Bound> {
    // An IPv6 socket reaches IPv4 addresses too (mapped), so one socket serves a mixed list.
    let bind: std::net::SocketAddr = if coordinators.iter().any(std::net::SocketAddr::is_ipv6) {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let wanted = RECEIVE_BUFFER;
    let bound =
        ferry_shared::udp::bind(bind, wanted).context("cannot open a UDP socket for QUIC")?;
    if bound.receive_buffer < wanted {
        info!(
            granted = bound.receive_buffer,
            wanted,
            "the UDP receive buffer is smaller than asked for: downloads may lose packets while \
             the disk is busy (raise net.core.rmem_max)"
        );
    }
    Ok(bound)
}

/// What the agent's QUIC socket asks the kernel to buffer: what the coordinator may have in
/// flight to it (the connection's receive window).
const RECEIVE_BUFFER: usize = tls::CONNECTION_RECEIVE_WINDOW as usize;

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

impl Daemon {
    fn model(&self, follower: FollowerId) -> &ModelName {
        &self.followers[follower].model
    }

    fn updater(&self, follower: FollowerId) -> &Updater {
        &self.followers[follower].updater
    }

    fn on_session(&mut self, message: FromSession) {
        match message {
            FromSession::Up {
                device_id,
                events_through,
            } => {
                self.last_down = None;
                notify::status(&format!("connected as {device_id}"));
                // An install that failed while the link was down goes again now, not when
                // its backoff (grown by every offline attempt) runs out.
                for follower in 0..self.followers.len() {
                    self.feed(follower, Event::RetryDue);
                }
                self.prove_trial();
                self.persist(|s| {
                    s.acknowledge(events_through);
                    s.connection.connected = true;
                    s.connection.last_connected_at = Some(unix_now());
                    s.connection.last_error = None;
                });
                self.publish_report();
            }
            FromSession::Desired(desired) => {
                let Some(follower) = self.followers.iter().position(|f| f.model == desired.model)
                else {
                    return;
                };
                let before = self.trust_state();
                let model = desired.model.clone();
                let (run, candidate) =
                    admit(&desired, &model, &mut self.trust, &self.profile, unix_now());
                if self.trust_state() != before {
                    self.save_trust();
                }
                self.feed_all(follower, [Event::Desired(run), Event::Candidate(candidate)]);
                // Half-finished downloads the coordinator no longer asks for go now, not when
                // the next download starts: a full disk may be why that never comes.
                let keep = self.updater(follower).downloading().cloned();
                fetch::drop_downloads_except(&self.layout, &model, keep.as_ref());
            }
            FromSession::Policy(policy) => {
                if policy != self.policy {
                    info!(
                        windows = policy.windows.len(),
                        overrides = policy.now.len(),
                        "the coordinator's rules for this device changed"
                    );
                    self.policy = policy;
                }
            }
            FromSession::Ack(through) => {
                self.persist(|s| s.acknowledge(through));
                self.publish_report();
            }
            FromSession::Down(reason) => {
                if self.last_down.as_deref() != Some(&reason) {
                    warn!("coordinator unreachable: {reason}");
                    notify::status(&format!("offline: {reason}"));
                    self.last_down = Some(reason.clone());
                }
                self.persist(|s| {
                    s.connection.connected = false;
                    s.connection.last_error = Some(reason);
                });
            }
        }
    }

    /// Steps a follower's updater with `event` and every event its synchronous actions
    /// produce.
    fn feed(&mut self, follower: FollowerId, event: Event) {
        self.feed_all(follower, [event]);
    }

    /// Steps a follower's updater with `events` in order, and every event their synchronous
    /// actions produce.
    fn feed_all(&mut self, follower: FollowerId, events: impl IntoIterator<Item = Event>) {
        let mut queue: VecDeque<Event> = events.into_iter().collect();
        while let Some(event) = queue.pop_front() {
            let holds_before = self.updater(follower).holds().to_vec();
            let error_before = self.updater(follower).last_error().cloned();
            for action in self.followers[follower].updater.step(event) {
                if let Some(next) = self.execute(follower, action) {
                    queue.push_back(next);
                }
            }
            let holds = self.updater(follower).holds().to_vec();
            let error = self.updater(follower).last_error().cloned();
            if holds != holds_before || error != error_before {
                let model = self.model(follower).clone();
                self.persist(|s| {
                    let m = s.model(&model);
                    m.holds = holds;
                    m.last_error = error;
                });
            }
        }
        self.publish_report();
    }

    fn execute(&mut self, follower: FollowerId, action: Effect) -> Option<Event> {
        let model = self.model(follower).clone();
        match action {
            Effect::Download(target) => {
                info!(%model, version = %target.version, "installing");
                let f = &mut self.followers[follower];
                if f.started.is_none() {
                    f.started = Some((Instant::now(), f.updater.slots().current.clone()));
                }
                self.spawn_download(follower, target);
                None
            }
            Effect::Switch(version) => {
                let result = self.locked(|layout| layout.switch(&model, &version, true));
                Some(match result {
                    Ok(slots) => {
                        info!(%model, %version, "switched; health check pending");
                        Event::Switched(slots)
                    }
                    Err(e) => Event::SwitchFailed(InstallError {
                        version,
                        kind: ErrorKind::Disk,
                        message: e.to_string(),
                        at: unix_now(),
                    }),
                })
            }
            Effect::CheckHealth(version) if Some(follower) == self.agent_follower => {
                self.begin_handover(follower, version)
            }
            Effect::CheckHealth(version) => {
                let (check, reload) = self
                    .config
                    .settings_of(&model)
                    .map(|m| (m.health_check.clone(), m.reload.clone()))
                    .unwrap_or_default();
                if check.is_none() && reload.is_none() {
                    return Some(Event::HealthPassed);
                }
                let internal = self.internal.clone();
                let installed = self.installed(follower, &version);
                tokio::spawn(async move {
                    // The server loads the new version first; the check then sees it served.
                    let mut verdict = Ok(());
                    if let Some(reload) = &reload {
                        verdict = reload.run(&model, &version, &installed).await;
                    }
                    if let (Ok(()), Some(check)) = (&verdict, &check) {
                        verdict = health::run(check, &model, &version, &installed).await;
                    }
                    let event = match verdict {
                        Ok(()) => Event::HealthPassed,
                        Err(message) => Event::HealthFailed(InstallError {
                            version,
                            kind: ErrorKind::HealthCheck,
                            message,
                            at: unix_now(),
                        }),
                    };
                    let _ = internal.send((follower, event)).await;
                });
                None
            }
            Effect::RollBack => {
                let slots = self.roll_back(follower);
                crate::footprint::settle_after_install();
                self.reload_after_rollback(follower, slots.current.clone());
                Some(Event::RolledBack(slots))
            }
            Effect::Commit => {
                if let Err(e) = self.locked(|layout| layout.commit(&model)) {
                    // The switch is confirmed either way; only clean-up of old versions failed.
                    warn!(%model, "confirming the update: {e}");
                }
                let to = self.updater(follower).slots().current.clone();
                if let Some(to) = to {
                    info!(%model, version = %to, "update confirmed");
                    let outcome = match self.followers[follower].bundle.take() {
                        Some(path) => format!("installed from bundle {}", path.display()),
                        None => "installed".into(),
                    };
                    self.record_update(follower, to, outcome);
                }
                crate::footprint::settle_after_install();
                None
            }
            Effect::SetCandidate(version) => {
                let result = self.locked(|layout| layout.set_candidate(&model, version.as_ref()));
                let now = self.layout.candidate(&model).ok().flatten();
                Some(Event::CandidateSet(match (result, version) {
                    (Ok(()), version) => {
                        match &version {
                            Some(v) => {
                                info!(%model, version = %v, "candidate staged beside current")
                            }
                            None => info!(%model, "candidate removed"),
                        }
                        Ok(version)
                    }
                    (Err(message), Some(v)) if now.as_ref() != Some(&v) => Err(InstallError {
                        version: v,
                        kind: ErrorKind::Disk,
                        message,
                        at: unix_now(),
                    }),
                    (Err(message), version) => {
                        // The link is as asked (only tidying failed), or removing it failed:
                        // either way go on; start-up reconciliation tidies what is left.
                        warn!(%model, "setting the candidate: {message}");
                        Ok(version)
                    }
                }))
            }
            Effect::RetryAfter(attempt) => {
                let delay =
                    backoff::delay(attempt, Duration::from_secs(5), Duration::from_secs(1800));
                info!(%model, "retrying the install in {}s", delay.as_secs());
                let internal = self.internal.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = internal.send((follower, Event::RetryDue)).await;
                });
                None
            }
            Effect::Emit(kind) => {
                match &kind {
                    EventKind::HealthRollback { from, to, error } => {
                        warn!(%model, %from, to = %to.as_ref().map_or("-".into(), ToString::to_string), "health check failed, rolled back: {}", error.message);
                        self.record_update(
                            follower,
                            from.clone(),
                            format!("rolled back: {}", error.message),
                        );
                    }
                    EventKind::InstallFailed(e) => {
                        warn!(%model, version = %e.version, kind = %e.kind, "install failed: {}", e.message);
                        let f = &mut self.followers[follower];
                        if f.updater.report().phase == ferry_shared::wire::UpdatePhase::Idle {
                            f.started = None;
                        }
                    }
                    _ => {}
                }
                self.persist(|s| s.push_event(&model, kind, unix_now()));
                None
            }
        }
    }

    fn spawn_download(&mut self, follower: FollowerId, target: Admitted) {
        let model = self.model(follower).clone();
        if let Some(path) = self.bundle_for(&model, &target.version) {
            self.followers[follower].bundle = Some(path.clone());
            let (layout, profile, internal, identity) = (
                self.layout.clone(),
                self.profile.clone(),
                self.internal.clone(),
                self.identity.clone(),
            );
            let version = target.version.clone();
            tokio::spawn(async move {
                let installed = tokio::task::spawn_blocking(move || {
                    crate::bundle::install::install_from_bundle(
                        &layout, &model, &target, &profile, &path, &identity,
                    )
                })
                .await;
                let event = match installed {
                    Ok(Ok(_)) => Event::Downloaded(version),
                    Ok(Err(f)) => Event::DownloadFailed {
                        error: f.error,
                        retry: f.retry,
                    },
                    Err(e) => Event::DownloadFailed {
                        error: InstallError {
                            version,
                            kind: ErrorKind::Disk,
                            message: format!("the bundle install task failed: {e}"),
                            at: unix_now(),
                        },
                        retry: crate::updater::Retry::Later,
                    },
                };
                crate::footprint::release_freed_memory();
                let _ = internal.send((follower, event)).await;
            });
            return;
        }
        self.followers[follower].bundle = None;
        let conn = self.connection.borrow().clone();
        let layout = self.layout.clone();
        let internal = self.internal.clone();
        let profile = self.profile.clone();
        let mirrors = crate::mirrors::Settings {
            own: self.config.mirrors.clone(),
            timeout: self.config.mirror_timeout,
        };
        let throttle = self.throttle.clone();
        let transfer = self.followers[follower].transfer.clone();
        tokio::spawn(async move {
            let mut stats = match transfer.lock() {
                Ok(t) if t.0.as_ref() == Some(&target.version) => t.1.clone(),
                _ => TransferStats::default(),
            };
            let network = fetch::Network {
                conn,
                mirrors: &mirrors,
                throttle: &throttle,
            };
            let result =
                fetch::download_version(network, &layout, &model, &target, &profile, &mut stats)
                    .await;
            let event = match result {
                Ok(staged) => {
                    info!(%model, version = %target.version, bytes_on_wire = stats.bytes_on_wire,
                        reused = stats.bytes_reused_locally, fetched = stats.chunks_fetched,
                        from_mirrors = stats.mirrored.bytes,
                        already_installed = staged.already_installed, "downloaded and verified");
                    Event::Downloaded(target.version.clone())
                }
                Err(f) => Event::DownloadFailed {
                    error: f.error,
                    retry: f.retry,
                },
            };
            if let Ok(mut t) = transfer.lock() {
                *t = (Some(target.version), stats);
            }
            // The download's buffers are all freed by now; let the device have them back.
            crate::footprint::release_freed_memory();
            let _ = internal.send((follower, event)).await;
        });
    }

    /// Undoes a probation. If even that fails, the process exits: the journal is still on
    /// disk, so the restart's reconciliation restores the old version.
    fn roll_back(&mut self, follower: FollowerId) -> crate::updater::Slots {
        let model = self.model(follower).clone();
        match self.locked(|layout| layout.abort_probation(&model)) {
            Ok(slots) => slots,
            Err(first) => {
                warn!(%model, "rollback failed ({first}); trying full reconciliation");
                match self.locked(|layout| layout.reconcile(&model).map(|r| r.slots)) {
                    Ok(slots) => slots,
                    Err(e) => {
                        error!(%model, "cannot roll back: {e}; exiting so that start-up reconciliation restores the previous version");
                        std::process::exit(1);
                    }
                }
            }
        }
    }

    /// Where `version` lies, seen through the `current` link (as the health check and the
    /// application see it).
    fn installed(
        &self,
        follower: FollowerId,
        version: &ferry_shared::Version,
    ) -> health::Installed {
        health::Installed::current(&self.layout, self.model(follower), version, &self.profile)
    }

    /// Tells the model server to load the version a rollback returned to (in the background:
    /// the rollback stands either way, and a failure is logged for the operator).
    fn reload_after_rollback(&self, follower: FollowerId, to: Option<ferry_shared::Version>) {
        let reload = self
            .config
            .settings_of(self.model(follower))
            .and_then(|m| m.reload.clone());
        let (Some(reload), Some(to)) = (reload, to) else {
            return;
        };
        let model = self.model(follower).clone();
        let installed = self.installed(follower, &to);
        tokio::spawn(async move {
            match reload.run(&model, &to, &installed).await {
                Ok(()) => info!(%model, version = %to, "model server reloaded after the rollback"),
                Err(e) => warn!(%model, version = %to, "after the rollback: {e}"),
            }
        });
    }

    fn record_update(&mut self, follower: FollowerId, to: ferry_shared::Version, outcome: String) {
        let f = &mut self.followers[follower];
        let (duration_ms, from) = match f.started.take() {
            Some((start, from)) => (start.elapsed().as_millis() as u64, from),
            None => (0, None),
        };
        let model = f.model.clone();
        let transfer = match f.transfer.lock() {
            Ok(mut t) if t.0.as_ref() == Some(&to) => {
                let stats = std::mem::take(&mut t.1);
                t.0 = None;
                (stats.attempts > 0).then_some(stats)
            }
            _ => None,
        };
        self.persist(|s| {
            s.model(&model).last_update = Some(UpdateRecord {
                from,
                to,
                at: unix_now(),
                duration_ms,
                outcome,
                transfer,
            });
        });
    }

    /// Picks up an operator's local rollback: the links changed while no install ran.
    fn look_for_local_changes(&mut self) {
        for follower in 0..self.followers.len() {
            if !self.updater(follower).is_settled() {
                continue;
            }
            let model = self.model(follower).clone();
            let Some((slots, holds)) = local::observe(&self.layout, &self.state, &model) else {
                continue;
            };
            if &slots == self.updater(follower).slots() {
                continue;
            }
            info!(%model, current = ?slots.current, "slots changed on the device");
            self.feed(follower, Event::SlotsChanged { slots, holds });
            crate::footprint::settle_after_install();
        }
    }

    fn locked<T>(
        &self,
        f: impl FnOnce(&SlotLayout) -> Result<T, crate::slots::SlotError>,
    ) -> Result<T, String> {
        let _lock = self.state.lock().map_err(|e| e.to_string())?;
        f(&self.layout).map_err(|e| e.to_string())
    }

    fn trust_state(&self) -> Option<TrustState> {
        match &self.trust {
            Trust::Metadata(state) => Some(state.clone()),
            Trust::Keys(_) => None,
        }
    }

    /// Saves the trusted root and snapshot version. A failure keeps the trust in memory,
    /// where it is in force, and is retried on every tick and reported until it is written.
    fn save_trust(&mut self) {
        if let Trust::Metadata(state) = &self.trust {
            let path = self.config.state_dir.join(TRUST_FILE);
            let written = crate::stored::encode(state, crate::stored::TRUST_FORMAT)
                .map_err(std::io::Error::other)
                .and_then(|bytes| crate::fsutil::write_atomic(&path, &bytes));
            match written {
                Ok(()) => self.trust_unsaved = false,
                Err(e) => {
                    error!(path = %path.display(), "cannot save the trust state: {e}");
                    self.trust_unsaved = true;
                    self.unsaved =
                        Some((format!("cannot save {}: {e}", path.display()), unix_now()));
                }
            }
        }
    }

    /// On every tick: the reserve for switching is made when there is room, and a state that
    /// could not be written is written as soon as it can be.
    fn keep_state_durable(&mut self) {
        if let Err(e) = crate::space::keep_reserve(&self.config.state_dir) {
            tracing::debug!("cannot make the reserve: {e}");
        }
        if self.state.is_unsaved() {
            match self.state.flush() {
                Ok(_) => info!("the agent state is saved again"),
                Err(e) => tracing::debug!("the agent state is still unsaved: {e}"),
            }
        }
        if self.trust_unsaved {
            self.save_trust();
            if !self.trust_unsaved {
                info!("the trust state is saved again");
            }
        }
        if self.unsaved.is_some() && !self.state.is_unsaved() && !self.trust_unsaved {
            self.unsaved = None;
            self.publish_report();
        }
    }

    fn persist(&mut self, change: impl FnOnce(&mut crate::state::AgentState)) {
        if let Err(e) = self.state.update(change) {
            error!("cannot save the agent state: {e}");
            self.unsaved = Some((format!("{e} (kept in memory, retried)"), unix_now()));
        }
    }

    fn publish_report(&self) {
        let events = self
            .state
            .load()
            .map(|s| s.pending_events)
            .unwrap_or_default();
        let mut models: Vec<_> = self.followers.iter().map(|f| f.updater.report()).collect();
        // A state the agent cannot write is reported as a disk error of what it runs, unless
        // a failure of its own is already being reported.
        if let Some(model) = models.first_mut()
            && let (Some((why, at)), None, Some(running)) =
                (&self.unsaved, &model.last_error, &model.active)
        {
            model.last_error = Some(ferry_shared::wire::InstallError {
                version: running.clone(),
                kind: ferry_shared::wire::ErrorKind::Disk,
                message: why.clone(),
                at: *at,
            });
        }
        let report = DeviceReport {
            models,
            events,
            metrics: Vec::new(),
        };
        for f in &self.followers {
            if let Some(intake) = self.metrics.of(&f.model) {
                intake.set_serving(
                    f.updater.slots().current.clone(),
                    f.updater.candidate().cloned(),
                );
            }
        }
        self.reports.send_if_modified(|current| {
            if *current == report {
                false
            } else {
                *current = report;
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent's socket had the kernel's default receive buffer: a 512 MiB download lost
    /// 500 datagrams to it.
    #[test]
    fn the_quic_socket_buffers_a_fetch_window() {
        let bound = client_socket(&["127.0.0.1:4433".parse().unwrap()]).unwrap();
        if let Some(expected) = ferry_shared::udp::expected_receive_buffer(RECEIVE_BUFFER) {
            assert!(
                bound.receive_buffer >= expected,
                "granted {}, expected {expected}",
                bound.receive_buffer
            );
        }
    }
}
