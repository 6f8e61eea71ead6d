//! Model metrics from the application on the device: a Unix datagram socket where the model
//! server reports each request, aggregated per version into counts, a latency histogram and
//! custom metrics, and sent to the coordinator with the heartbeats (where rollout gates read
//! them).
//!
//! One datagram per request, one line of text:
//!
//! ```text
//! ok 12.5
//! error 230 confidence=0.41
//! ```
//!
//! the outcome (`ok` or `error`), the latency in milliseconds, then any `name=value` custom
//! metrics. Requests are counted against the version `current` points at when they arrive.
//! An agent following several models counts a datagram for the first unless it names
//! another with a leading `@NAME` (`@tokenizer ok 3.1`).
//! During a shadow rollout wave the application also runs the version the `candidate` link
//! names on the same inputs and reports those runs with a leading `shadow`
//! (`shadow ok 14.2`); they count against the candidate, and are dropped when there is none.
//! From a shell: `printf 'ok 12\n' | socat - UNIX-SENDTO:/var/lib/ferry/metrics.sock`; from
//! Python: `socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"ok 12", path)`.
//! Malformed datagrams are counted and dropped; the number of versions and custom names kept
//! is bounded, so a misbehaving client cannot grow the agent.
//!
//! The totals survive a restart of the agent or the device: the daemon saves them
//! (`STATE/models/MODEL/metrics.json`) about once a minute when they changed, and at a clean
//! stop. A crash loses at most that minute; a rollout gate then waits a little longer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ferry_shared::rollout::{Distribution, VersionMetrics};
use ferry_shared::wire::{
    MAX_REPORTED_DISTRIBUTIONS, MAX_REPORTED_METRICS, ReportedDistribution, ReportedMetrics,
};
use ferry_shared::{ModelName, Version};
use tracing::{debug, warn};

/// Most custom metric names kept per version.
const MAX_CUSTOM: usize = 16;
/// Most custom metrics per version whose distribution is kept (the first ones reported), for
/// drift gates; with [`MAX_REPORTED_DISTRIBUTIONS`] in all.
const MAX_DISTRIBUTED: usize = 4;
/// Longest custom metric name.
const MAX_NAME: usize = 64;

/// One request as the application reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The model it is about (`@NAME`); `None`: the first model.
    pub model: Option<ModelName>,
    /// The candidate served it, in shadow.
    pub shadow: bool,
    /// It succeeded.
    pub ok: bool,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
    /// Custom metrics.
    pub custom: Vec<(String, f64)>,
}

/// Parses one datagram (see the module documentation).
pub fn parse(line: &str) -> Result<Sample, String> {
    let mut words = line.split_whitespace().peekable();
    let model = match words.next_if(|w| w.starts_with('@')) {
        Some(w) => Some(
            w[1..]
                .parse::<ModelName>()
                .map_err(|e| format!("{w}: {e}"))?,
        ),
        None => None,
    };
    let shadow = words.next_if_eq(&"shadow").is_some();
    let ok = match words.next() {
        Some("ok") => true,
        Some("error") => false,
        other => return Err(format!("outcome must be `ok` or `error`, not {other:?}")),
    };
    let latency_ms: f64 = words
        .next()
        .ok_or("missing latency")?
        .parse()
        .map_err(|_| "latency is not a number".to_owned())?;
    if !latency_ms.is_finite() || latency_ms < 0.0 {
        return Err("latency must be a finite number ≥ 0".into());
    }
    let mut custom = Vec::new();
    for word in words {
        let (name, value) = word.split_once('=').ok_or("expected name=value")?;
        let value: f64 = value.parse().map_err(|_| format!("{name}: not a number"))?;
        if name.is_empty() || name.len() > MAX_NAME || !value.is_finite() {
            return Err(format!("bad custom metric {name:?}"));
        }
        custom.push((name.to_owned(), value));
    }
    Ok(Sample {
        model,
        shadow,
        ok,
        latency_ms,
        custom,
    })
}

/// The running totals, shared by the socket reader, the daemon and the session.
#[derive(Debug)]
pub struct Intake {
    model: ModelName,
    inner: Mutex<Totals>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Totals {
    current: Option<Version>,
    candidate: Option<Version>,
    by_version: BTreeMap<Version, VersionMetrics>,
    /// The distribution of each custom metric's values, per version (absent from files
    /// written before drift gates).
    #[serde(default)]
    values: BTreeMap<Version, BTreeMap<String, Distribution>>,
    /// Bumped at each change of `values`, so unchanged distributions are not sent again.
    #[serde(skip)]
    values_changed: u64,
    #[serde(skip)]
    dropped: u64,
    /// Changed since the last save.
    #[serde(skip)]
    dirty: bool,
}

impl Intake {
    /// Empty totals for `model`.
    pub fn new(model: ModelName) -> Arc<Self> {
        Arc::new(Self {
            model,
            inner: Mutex::default(),
        })
    }

    /// The totals [`Intake::save`] left at `path`; empty ones when there is no file, and
    /// when it cannot be read (logged: the figures restart, nothing else is lost).
    pub fn load(model: ModelName, path: &Path) -> Arc<Self> {
        let totals = match std::fs::read(path) {
            Ok(bytes) => {
                match crate::stored::decode::<Totals>(&bytes, crate::stored::METRICS_FORMAT) {
                    Ok(mut t) => {
                        let excess = t.by_version.len().saturating_sub(MAX_REPORTED_METRICS);
                        let oldest: Vec<Version> =
                            t.by_version.keys().take(excess).cloned().collect();
                        for v in oldest {
                            t.by_version.remove(&v);
                        }
                        t.values.retain(|v, _| t.by_version.contains_key(v));
                        for by_metric in t.values.values_mut() {
                            while by_metric.len() > MAX_DISTRIBUTED {
                                by_metric.pop_last();
                            }
                            for d in by_metric.values_mut() {
                                *d = d.sanitized();
                            }
                        }
                        t.values_changed = 1;
                        t
                    }
                    Err(e) => {
                        warn!(path = %path.display(), "saved model metrics unreadable, starting from zero: {e}");
                        Totals::default()
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Totals::default(),
            Err(e) => {
                warn!(path = %path.display(), "cannot read saved model metrics, starting from zero: {e}");
                Totals::default()
            }
        };
        Arc::new(Self {
            model,
            inner: Mutex::new(totals),
        })
    }

    /// Writes the totals to `path` (atomically) if they changed since the last save; returns
    /// whether it wrote.
    pub fn save(&self, path: &Path) -> std::io::Result<bool> {
        let bytes = {
            let mut totals = self.totals();
            if !totals.dirty {
                return Ok(false);
            }
            totals.dirty = false;
            crate::stored::encode(&*totals, crate::stored::METRICS_FORMAT)
                .map_err(std::io::Error::other)?
        };
        let written = crate::fsutil::write_atomic(path, &bytes);
        if written.is_err() {
            self.totals().dirty = true;
        }
        written.map(|()| true)
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The versions requests now count against: `current`, and `candidate` for shadow runs.
    /// A version that starts serving again starts from zero, so figures from an earlier
    /// attempt (say, a rollout rolled back and retried) never speak for this one.
    pub fn set_serving(&self, current: Option<Version>, candidate: Option<Version>) {
        let mut totals = self.totals();
        for version in [&current, &candidate].into_iter().flatten() {
            if totals.current.as_ref() != Some(version)
                && totals.candidate.as_ref() != Some(version)
            {
                totals.by_version.remove(version);
                totals.values.remove(version);
                totals.values_changed += 1;
            }
        }
        totals.current = current;
        totals.candidate = candidate;
    }

    /// Counts one request against the version that served it.
    pub fn record(&self, sample: &Sample) {
        let mut totals = self.totals();
        let serving = if sample.shadow {
            &totals.candidate
        } else {
            &totals.current
        };
        let Some(version) = serving.clone() else {
            totals.dropped += 1;
            return;
        };
        if !totals.by_version.contains_key(&version)
            && totals.by_version.len() >= MAX_REPORTED_METRICS
        {
            // Forget the oldest version to make room.
            if let Some(oldest) = totals.by_version.keys().find(|v| **v != version).cloned() {
                totals.by_version.remove(&oldest);
                totals.values.remove(&oldest);
            }
        }
        totals.dirty = true;
        if !sample.custom.is_empty() {
            totals.values_changed += 1;
            let values = totals.values.entry(version.clone()).or_default();
            for (name, value) in &sample.custom {
                if values.len() >= MAX_DISTRIBUTED && !values.contains_key(name) {
                    continue;
                }
                values.entry(name.clone()).or_default().record(*value);
            }
        }
        let m = totals.by_version.entry(version).or_default();
        m.requests += 1;
        m.errors += u64::from(!sample.ok);
        m.latency
            .record(sample.latency_ms.min(f64::from(u32::MAX)) as u32);
        for (name, value) in &sample.custom {
            if m.custom.len() >= MAX_CUSTOM && !m.custom.contains_key(name) {
                continue;
            }
            let t = m.custom.entry(name.clone()).or_default();
            t.sum += value;
            t.count += 1;
        }
    }

    /// Counts a datagram that did not parse.
    pub fn reject(&self) {
        self.totals().dropped += 1;
    }

    /// What the next heartbeat carries.
    pub fn snapshot(&self) -> Vec<ReportedMetrics> {
        self.totals()
            .by_version
            .iter()
            .map(|(version, metrics)| ReportedMetrics {
                model: self.model.clone(),
                version: version.clone(),
                metrics: metrics.clone(),
            })
            .collect()
    }

    /// The distributions to send when they changed since `sent` (a mark this returns): the
    /// newest versions' first, at most [`MAX_REPORTED_DISTRIBUTIONS`]. `None` when nothing
    /// changed.
    pub fn distributions_since(&self, sent: u64) -> Option<(u64, Vec<ReportedDistribution>)> {
        let totals = self.totals();
        if totals.values_changed == sent {
            return None;
        }
        let all = totals
            .values
            .iter()
            .rev()
            .flat_map(|(version, by_metric)| {
                by_metric
                    .iter()
                    .map(|(metric, values)| ReportedDistribution {
                        model: self.model.clone(),
                        version: version.clone(),
                        metric: metric.clone(),
                        values: values.clone(),
                    })
            })
            .take(MAX_REPORTED_DISTRIBUTIONS)
            .collect();
        Some((totals.values_changed, all))
    }

    /// Datagrams dropped (malformed, before any version was active, or shadow runs without a
    /// candidate).
    pub fn dropped(&self) -> u64 {
        self.totals().dropped
    }
}

/// The totals of every model the device follows (one [`Intake`] each), as the socket reader,
/// the daemon and the session share them.
#[derive(Debug)]
pub struct Intakes {
    /// The first is the one datagrams without `@NAME` count for.
    all: Vec<(Arc<Intake>, std::path::PathBuf)>,
}

impl Intakes {
    /// The totals of `models` (at least one), each loaded from where `path_of` says.
    pub fn load(
        models: &[ModelName],
        path_of: impl Fn(&ModelName) -> std::path::PathBuf,
    ) -> Arc<Self> {
        Arc::new(Self {
            all: models
                .iter()
                .map(|m| {
                    let path = path_of(m);
                    (Intake::load(m.clone(), &path), path)
                })
                .collect(),
        })
    }

    /// The totals of `model`.
    pub fn of(&self, model: &ModelName) -> Option<&Arc<Intake>> {
        self.all.iter().map(|(i, _)| i).find(|i| &i.model == model)
    }

    fn first(&self) -> Option<&Arc<Intake>> {
        self.all.first().map(|(i, _)| i)
    }

    /// Counts one request against the model it names (the first when it names none); a
    /// datagram for a model the device does not follow is dropped.
    pub fn record(&self, sample: &Sample) {
        let intake = match &sample.model {
            None => self.first(),
            Some(m) => self.of(m),
        };
        match intake {
            Some(intake) => intake.record(sample),
            None => self.reject(),
        }
    }

    /// Counts a datagram that did not parse (against the first model).
    pub fn reject(&self) {
        if let Some(first) = self.first() {
            first.reject();
        }
    }

    /// Saves each model's totals where they were loaded from, when changed.
    pub fn save(&self) {
        for (intake, path) in &self.all {
            if let Err(e) = intake.save(path) {
                warn!(path = %path.display(), "cannot save the model metrics: {e}");
            }
        }
    }

    /// What the next heartbeat carries, every model's, at most [`MAX_REPORTED_METRICS`].
    pub fn snapshot(&self) -> Vec<ReportedMetrics> {
        let mut all: Vec<ReportedMetrics> =
            self.all.iter().flat_map(|(i, _)| i.snapshot()).collect();
        all.truncate(MAX_REPORTED_METRICS);
        all
    }

    /// Every model's distributions when any changed since `sent` (a mark this returns), at
    /// most [`MAX_REPORTED_DISTRIBUTIONS`].
    pub fn distributions_since(&self, sent: u64) -> Option<(u64, Vec<ReportedDistribution>)> {
        let mark: u64 = self
            .all
            .iter()
            .map(|(i, _)| i.totals().values_changed)
            .fold(0u64, u64::wrapping_add);
        if mark == sent {
            return None;
        }
        let mut all: Vec<ReportedDistribution> = self
            .all
            .iter()
            .filter_map(|(i, _)| i.distributions_since(u64::MAX).map(|(_, d)| d))
            .flatten()
            .collect();
        all.truncate(MAX_REPORTED_DISTRIBUTIONS);
        Some((mark, all))
    }

    /// Datagrams dropped, all models together.
    pub fn dropped(&self) -> u64 {
        self.all.iter().map(|(i, _)| i.dropped()).sum()
    }
}

/// Listens on `path` until the task is dropped; binding failures are logged, not fatal (the
/// agent updates without metrics, and rollout gates that need them wait).
/// Datagrams `lock SECONDS [reason]` and `unlock` go to `lock` instead (see
/// [`crate::maintenance`]).
pub async fn serve(path: &Path, intake: Arc<Intakes>, lock: Arc<crate::maintenance::AppLock>) {
    let _ = std::fs::remove_file(path);
    let socket = match tokio::net::UnixDatagram::bind(path) {
        Ok(s) => s,
        Err(e) => {
            warn!(path = %path.display(), "cannot open the metrics socket: {e}");
            return;
        }
    };
    // The model server may run as another user of the same group.
    if let Err(e) = crate::access::set_mode(path, crate::access::SOCKET) {
        warn!(path = %path.display(), "cannot let the agent's group use the metrics socket: {e}");
    }
    let mut buf = vec![0u8; 2048];
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                warn!("metrics socket: {e}");
                return;
            }
        };
        let line = std::str::from_utf8(&buf[..n]).map(str::trim);
        if let Ok(Some(command)) = line.map(crate::maintenance::parse_lock) {
            match command {
                Ok(command) => {
                    debug!("application lock: {command:?}");
                    lock.apply(command, crate::unix_now());
                }
                Err(e) => {
                    debug!("dropped a lock datagram: {e}");
                    intake.reject();
                }
            }
            continue;
        }
        match line.map_err(|e| e.to_string()).and_then(parse) {
            Ok(sample) => intake.record(&sample),
            Err(e) => {
                debug!("dropped a metrics datagram: {e}");
                intake.reject();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_parse_and_count_against_the_current_version() {
        assert_eq!(
            parse("error 230 confidence=0.41").unwrap(),
            Sample {
                model: None,
                shadow: false,
                ok: false,
                latency_ms: 230.0,
                custom: vec![("confidence".into(), 0.41)]
            }
        );
        assert_eq!(
            parse("@tokenizer shadow ok 3").unwrap().model,
            Some("tokenizer".parse().unwrap())
        );
        for bad in [
            "",
            "maybe 1",
            "ok",
            "ok -1",
            "@ ok 1",
            "@Bad/Name ok 1",
            "ok NaN",
            "ok 1 x",
            "ok 1 =2",
            "ok 1 a=inf",
            "shadow",
            "shadow shadow ok 1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let intake = Intake::new("m".parse().unwrap());
        intake.record(&parse("ok 1").unwrap());
        assert_eq!(intake.dropped(), 1, "nothing active yet");
        intake.set_serving(Some("1.0.0".parse().unwrap()), None);
        intake.record(&parse("ok 3").unwrap());
        intake.record(&parse("error 40 c=2").unwrap());
        intake.record(&parse("shadow ok 3").unwrap());
        assert_eq!(intake.dropped(), 2, "a shadow run without a candidate");
        intake.set_serving(
            Some("1.0.0".parse().unwrap()),
            Some("2.0.0".parse().unwrap()),
        );
        intake.record(&parse("shadow ok 5").unwrap());
        let snap = intake.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!((snap[0].metrics.requests, snap[0].metrics.errors), (2, 1));
        assert_eq!(snap[0].metrics.custom["c"].mean(), Some(2.0));
        assert_eq!(snap[1].metrics.requests, 1);
        // A version that serves again starts from zero.
        intake.set_serving(Some("1.0.0".parse().unwrap()), None);
        intake.set_serving(
            Some("1.0.0".parse().unwrap()),
            Some("2.0.0".parse().unwrap()),
        );
        intake.record(&parse("shadow ok 5").unwrap());
        let snap = intake.snapshot();
        assert_eq!((snap[0].metrics.requests, snap[1].metrics.requests), (2, 1));
        // Bounded: a client cycling through versions or names cannot grow the agent.
        for i in 0..100 {
            intake.set_serving(Some(format!("3.0.{i}").parse().unwrap()), None);
            intake.record(&parse(&format!("ok 1 n{i}=1")).unwrap());
        }
        assert!(intake.snapshot().len() <= MAX_REPORTED_METRICS);
    }

    #[test]
    fn totals_survive_a_restart_and_a_damaged_file_starts_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        let intake = Intake::new("m".parse().unwrap());
        assert!(!intake.save(&path).unwrap(), "nothing to save yet");
        intake.set_serving(Some("1.0.0".parse().unwrap()), None);
        intake.record(&parse("error 30").unwrap());
        intake.record(&parse("ok 10 c=1").unwrap());
        assert!(intake.save(&path).unwrap());
        assert!(!intake.save(&path).unwrap(), "unchanged since");

        let again = Intake::load("m".parse().unwrap(), &path);
        assert_eq!(again.snapshot(), intake.snapshot());
        // Still serving the same version after the restart: the figures go on.
        again.set_serving(Some("1.0.0".parse().unwrap()), None);
        again.record(&parse("ok 10").unwrap());
        assert_eq!(again.snapshot()[0].metrics.requests, 3);

        std::fs::write(&path, b"{not json").unwrap();
        assert!(
            Intake::load("m".parse().unwrap(), &path)
                .snapshot()
                .is_empty()
        );
    }

    #[test]
    fn value_distributions_are_kept_per_version_bounded_and_sent_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        let intake = Intake::new("m".parse().unwrap());
        assert_eq!(intake.distributions_since(0), None, "nothing yet");
        intake.set_serving(Some("1.0.0".parse().unwrap()), None);
        for i in 0..50 {
            intake.record(&parse(&format!("ok 3 score=0.{i:02} a=1 b=2 c=3 d=4")).unwrap());
        }
        let (mark, sent) = intake.distributions_since(0).unwrap();
        let names: Vec<&str> = sent.iter().map(|d| d.metric.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b", "c", "score"],
            "the first four names reported"
        );
        let score = sent.iter().find(|d| d.metric == "score").unwrap();
        assert_eq!(score.values.total(), 50);
        assert_eq!(
            intake.distributions_since(mark),
            None,
            "unchanged: not sent again"
        );
        intake.record(&parse("ok 3").unwrap());
        assert_eq!(
            intake.distributions_since(mark),
            None,
            "no values in that request"
        );

        // Saved and loaded, they are sent again on the next session.
        intake.save(&path).unwrap();
        let again = Intake::load("m".parse().unwrap(), &path);
        let (_, resent) = again.distributions_since(0).unwrap();
        assert_eq!(resent, sent);
        // A version that starts serving again starts from nothing.
        again.set_serving(Some("2.0.0".parse().unwrap()), None);
        again.set_serving(Some("1.0.0".parse().unwrap()), None);
        let (_, after) = again.distributions_since(0).unwrap();
        assert!(after.is_empty(), "{after:?}");
    }

    #[tokio::test]
    async fn the_socket_takes_datagrams_from_the_application() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.sock");
        let models: Vec<ModelName> = vec!["m".parse().unwrap(), "tok".parse().unwrap()];
        let intakes = Intakes::load(&models, |m| dir.path().join(format!("{m}.json")));
        let intake = intakes.of(&models[0]).unwrap().clone();
        let tok = intakes.of(&models[1]).unwrap().clone();
        intake.set_serving(Some("1.0.0".parse().unwrap()), None);
        tok.set_serving(Some("3.0.0".parse().unwrap()), None);
        let lock = Arc::new(crate::maintenance::AppLock::default());
        let server = tokio::spawn({
            let (path, intakes, lock) = (path.clone(), intakes.clone(), lock.clone());
            async move { serve(&path, intakes, lock).await }
        });
        let client = tokio::net::UnixDatagram::unbound().unwrap();
        for _ in 0..50 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        for msg in [
            "ok 10",
            "error 20",
            "garbage",
            "lock 60 surgery",
            "@tok ok 4",
            "@stranger ok 1",
        ] {
            client.send_to(msg.as_bytes(), &path).await.unwrap();
        }
        for _ in 0..100 {
            if intake
                .snapshot()
                .first()
                .is_some_and(|m| m.metrics.requests == 2)
                && intakes.dropped() == 2
                && lock.held(crate::unix_now()).is_some()
                && tok
                    .snapshot()
                    .first()
                    .is_some_and(|m| m.metrics.requests == 1)
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let snap = intake.snapshot();
        assert_eq!((snap[0].metrics.requests, snap[0].metrics.errors), (2, 1));
        assert_eq!(
            intakes.dropped(),
            2,
            "garbage, and a model it does not follow"
        );
        let all = intakes.snapshot();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!((all[1].model.as_str(), all[1].metrics.requests), ("tok", 1));
        assert_eq!(
            lock.held(crate::unix_now()).map(|(_, by)| by).as_deref(),
            Some("surgery"),
            "the lock datagram took the lock and counted as no request"
        );
        server.abort();
    }
}
