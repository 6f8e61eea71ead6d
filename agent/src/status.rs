//! `ferry-agent status`: what the device holds and did, read from disk (works whether or not
//! the daemon runs, and with the coordinator offline).

use std::path::PathBuf;

use anyhow::Result;
use ferry_shared::Version;
use ferry_shared::wire::InstallError;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::slots::SlotLayout;
use crate::state::{Connection, StateFile, UpdateRecord};
use crate::updater::Hold;

/// The status document (`--json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Device id (absent before the first start).
    pub device_id: Option<String>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Target triple of this agent build.
    pub target: String,
    /// Per model.
    pub models: Vec<ModelStatus>,
    /// Events not yet acknowledged by the coordinator.
    pub pending_events: usize,
    /// Whether the daemon runs (it holds the state directory's daemon lock).
    #[serde(default)]
    pub daemon_running: bool,
    /// Coordinator connection.
    pub connection: Connection,
    /// The disk the state directory is on, and what the agent's files take there.
    #[serde(default)]
    pub disk: Option<ferry_shared::wire::DiskSpace>,
    /// The download cap in force now (`[download]` and its schedule, local time).
    #[serde(default)]
    pub download_cap: Option<String>,
}

/// One model on the device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelStatus {
    /// The model's name.
    pub model: String,
    /// Version `current` names.
    pub current: Option<Version>,
    /// Version `previous` names.
    pub previous: Option<Version>,
    /// Version `candidate` names (staged for shadow traffic, not serving).
    #[serde(default)]
    pub candidate: Option<Version>,
    /// Where `current` points.
    pub current_path: Option<PathBuf>,
    /// Complete versions on disk.
    pub installed: Vec<Version>,
    /// Version switched to but not yet confirmed.
    pub in_probation: Option<Version>,
    /// Versions held back.
    pub holds: Vec<Hold>,
    /// Last failure.
    pub last_error: Option<InstallError>,
    /// Last update.
    pub last_update: Option<UpdateRecord>,
    /// The switch held back now, and why.
    #[serde(default)]
    pub deferred: Option<ferry_shared::wire::Deferral>,
}

/// Gathers the status from disk.
pub fn gather(config: &Config) -> Result<AgentStatus> {
    let layout = SlotLayout::new(config.state_dir.clone());
    let file = StateFile::new(&config.state_dir);
    let state = file.load()?;
    // Taken and let go at once: held, a daemon runs. A lock this user cannot open (a
    // read-only look at another user's state) says nothing: assume it runs, as before.
    let daemon_running = file.daemon_lock().map_or(true, |l| l.is_none());
    let mut models = Vec::new();
    for (model, _) in config.follows() {
        let model = &model;
        let slots = layout.slots(model)?;
        let memory = state.models.get(model).cloned().unwrap_or_default();
        models.push(ModelStatus {
            model: model.to_string(),
            current_path: std::fs::canonicalize(layout.current_link(model)).ok(),
            current: slots.current,
            previous: slots.previous,
            candidate: layout.candidate(model)?,
            installed: layout.installed(model)?,
            in_probation: layout.in_probation(model)?,
            holds: memory.holds,
            last_error: memory.last_error,
            last_update: memory.last_update,
            deferred: memory.deferred,
        });
    }
    let device_id = crate::identity::load(&config.state_dir)
        .ok()
        .map(|k| ferry_shared::wire::DeviceId::of(&k.public()).to_string());
    Ok(AgentStatus {
        device_id,
        state_dir: config.state_dir.clone(),
        target: crate::TARGET.to_owned(),
        models,
        pending_events: state.pending_events.len(),
        connection: state.connection,
        daemon_running,
        disk: crate::space::disk_space(&config.state_dir, None),
        download_cap: Some(
            config
                .download_rate
                .rate_at(crate::localtime::week_minute_now())
                .to_string(),
        ),
    })
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`.
fn ago(at: u64) -> String {
    let d = crate::unix_now().saturating_sub(at);
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86400),
    }
}

/// Prints the status for people.
pub fn print(status: &AgentStatus) {
    let dash = |v: &Option<Version>| {
        v.as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string)
    };
    crate::outln!(
        "device      {}",
        status.device_id.as_deref().unwrap_or("(not started yet)")
    );
    crate::outln!("state dir   {}", status.state_dir.display());
    if let Some(cap) = &status.download_cap {
        crate::outln!("downloads   {cap} now");
    }
    if let Some(d) = &status.disk {
        use ferry_shared::disk_need::human;
        crate::outln!(
            "disk        {} free of {}; versions and downloads take {}",
            human(d.free),
            human(d.total),
            human(d.held)
        );
    }
    let c = &status.connection;
    let last = || {
        c.last_connected_at
            .map_or("never connected".to_owned(), |at| {
                format!("last connected {}", ago(at))
            })
    };
    let conn = if !status.daemon_running {
        format!("agent not running ({})", last())
    } else if c.connected {
        "connected".to_owned()
    } else {
        format!(
            "offline ({}{})",
            c.last_error
                .as_ref()
                .map_or(String::new(), |e| format!("{e}; ")),
            last()
        )
    };
    crate::outln!("coordinator {conn}");
    for m in &status.models {
        crate::outln!();
        crate::outln!("model {}", m.model);
        crate::outln!("  current   {}", dash(&m.current));
        crate::outln!("  previous  {}", dash(&m.previous));
        if let Some(p) = &m.current_path {
            crate::outln!("  path      {}", p.display());
        }
        if let Some(c) = &m.candidate {
            crate::outln!("  candidate {c} (shadow: staged, not serving)");
        }
        let installed: Vec<String> = m.installed.iter().map(ToString::to_string).collect();
        crate::outln!("  on disk   {}", installed.join(", "));
        if let Some(v) = &m.in_probation {
            crate::outln!("  probation {v} (health check pending)");
        }
        for h in &m.holds {
            crate::outln!("  holding   {} back: {}", h.version, h.reason);
        }
        if let Some(d) = &m.deferred {
            crate::outln!(
                "  waiting   to switch to {} since {}: {}",
                d.version,
                d.since,
                why_deferred(&d.reason)
            );
        }
        if let Some(u) = &m.last_update {
            crate::outln!(
                "  last update {} -> {}: {} ({} ms)",
                dash(&u.from),
                u.to,
                u.outcome,
                u.duration_ms
            );
            if let Some(t) = &u.transfer {
                let encodings: Vec<String> = t
                    .encodings
                    .iter()
                    .map(|(e, n)| format!("{e} {n}"))
                    .collect();
                crate::outln!(
                    "    transfer {} B on the wire, {} B reused locally; {} of {} chunks fetched{}{}; {} attempt(s) in {} ms; {}",
                    t.bytes_on_wire,
                    t.bytes_reused_locally,
                    t.chunks_fetched,
                    t.chunks_total,
                    if t.chunks_refetched > 0 {
                        format!(" ({} again whole)", t.chunks_refetched)
                    } else {
                        String::new()
                    },
                    if t.resumed > 0 {
                        format!(", {} resumed", t.resumed)
                    } else {
                        String::new()
                    },
                    t.attempts,
                    t.duration_ms,
                    encodings.join(", ")
                );
                let m = &t.mirrored;
                if m.chunks > 0 || m.failures > 0 {
                    crate::outln!(
                        "    mirrors {} chunks, {} B; {} failed and came from elsewhere",
                        m.chunks,
                        m.bytes,
                        m.failures
                    );
                }
            }
        }
        if let Some(e) = &m.last_error {
            crate::outln!("  last error  {} {}: {}", e.kind, e.version, e.message);
        }
    }
    if status.pending_events > 0 {
        crate::outln!();
        crate::outln!("{} event(s) waiting to be reported", status.pending_events);
    }
}

/// Why a switch waits, in words.
fn why_deferred(reason: &ferry_shared::wire::DeferReason) -> String {
    use ferry_shared::wire::DeferReason;
    match reason {
        DeferReason::Window { opens: Some(at) } => {
            format!("outside the update windows (the next opens at {at})")
        }
        DeferReason::Window { opens: None } => "outside the update windows".into(),
        DeferReason::Locked {
            until: Some(at),
            by,
        } => {
            format!("locked by the application ({by}) until {at}")
        }
        DeferReason::Locked { until: None, by } => format!("locked by the application ({by})"),
        DeferReason::UpdateSet { waiting_for } => {
            format!("waiting for {waiting_for}, in its update set")
        }
    }
}
