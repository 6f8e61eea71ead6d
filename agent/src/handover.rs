//! The agent's own updates: handing over to a new agent binary, its trial, and healing when
//! it fails.
//!
//! With `[self_update]`, the agent follows a second model whose releases carry the agent
//! itself, one variant per target triple. A release of it installs like any model's: checked
//! against the trusted keys or root, assembled from verified chunks, switched under a journal
//! in probation, with the old binary kept as `previous`. Only its health check differs: the
//! new binary has to prove itself by running.
//!
//! 1. The running agent, its other models settled, writes a [`Trial`] (`STATE/handover.json`)
//!    and stops its daemon; [`at_start`] then marks the trial *launched* (durably) and execs
//!    the new binary in the same process, so systemd sees the same service, pid and watchdog.
//! 2. The new binary finds the launched trial naming itself and runs on trial: it keeps the
//!    agent model's switch in probation ([`crate::slots::SlotLayout::reconcile_keeping`]), and
//!    must connect, report and pass the device's health check (of the model it runs) before
//!    the deadline. Then it confirms the switch, removes the trial and reports the install.
//!    Failing that, or at the deadline, it exits with an error.
//! 3. Any start that finds a launched trial naming another binary means the new one died, was
//!    killed (by the watchdog, say) or the device lost power before it proved itself. That
//!    start — systemd restarts the unit's own binary, the packaged `/usr/bin/ferry-agent` —
//!    heals: it undoes the switch, holds the version back so it is not tried again, reports
//!    the rollback, and goes on with the previous agent.
//!
//! A confirmed self-installed agent newer than the packaged one is exec'd at every start
//! ([`Start::Exec`]); a package upgrade to a newer version than it wins again. What heals needs
//! a supervisor that restarts the agent when it exits (systemd's `Restart=`); a binary that
//! hangs without exiting is caught by systemd's watchdog, which the new binary must ping too.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ferry_shared::wire::{ErrorKind, EventKind, InstallError};
use ferry_shared::{ModelName, Version};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::slots::SlotLayout;
use crate::state::StateFile;
use crate::unix_now;
use crate::updater::Hold;

/// Where the trial is kept, in the state directory.
const TRIAL_FILE: &str = "handover.json";

/// A new agent binary on trial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The model that carries the agent.
    pub model: ModelName,
    /// The release of it on trial.
    pub version: Version,
    /// Its binary, in the installed versions.
    pub binary: PathBuf,
    /// Whether it was exec'd: from then on, any other binary that starts heals.
    pub launched: bool,
    /// When it must have proven itself (Unix seconds, device clock).
    pub deadline: u64,
}

/// What a starting agent does before its daemon runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Run this binary's daemon.
    Run,
    /// Run this binary's daemon on trial.
    OnTrial(Trial),
    /// Mark the trial launched, then exec its binary.
    Launch(Trial),
    /// The trial's binary started and did not prove itself: undo, hold, decide again.
    Heal(Trial),
    /// Exec this confirmed install of the agent, newer than this binary.
    Exec(PathBuf),
}

/// Decides what a starting agent does, from the trial on disk, this process's binary, the
/// agent model's confirmed install (version and binary) and this binary's own version.
pub fn decide(
    trial: Option<&Trial>,
    me: &Path,
    installed: Option<(&Version, &Path)>,
    own: &Version,
) -> Start {
    match trial {
        Some(t) if !t.launched => Start::Launch(t.clone()),
        Some(t) if t.binary == me => Start::OnTrial(t.clone()),
        Some(t) => Start::Heal(t.clone()),
        None => match installed {
            Some((version, binary)) if version > own && binary != me => {
                Start::Exec(binary.to_owned())
            }
            _ => Start::Run,
        },
    }
}

/// What [`at_start`] settled on.
#[derive(Debug)]
pub enum Next {
    /// Run the daemon, on trial or not.
    Run(Option<Trial>),
    /// Exec this binary; `trial` says whether it is a trial's launch.
    Exec {
        /// The binary.
        binary: PathBuf,
        /// Whether a failure to exec it fails a trial (else: run this binary instead).
        trial: bool,
    },
}

/// Works out what this process does at start and carries out the steps on the way: a failed
/// trial is healed, a pending one marked launched. Without `[self_update]` and without a
/// trial on disk, it is always [`Next::Run`].
pub fn at_start(config: &Config) -> Result<Next> {
    let state = StateFile::new(&config.state_dir);
    let me = own_binary();
    let own: Version = env!("CARGO_PKG_VERSION")
        .parse()
        .context("this agent's own version")?;
    // Healing changes what is installed, so decide again after it (at most twice).
    for _ in 0..3 {
        let trial = load(&config.state_dir)?;
        let installed = match (&trial, &config.self_update) {
            (None, Some(s)) => confirmed_install(config, &s.model),
            _ => None,
        };
        let start = decide(
            trial.as_ref(),
            &me,
            installed.as_ref().map(|(v, p)| (v, p.as_path())),
            &own,
        );
        match start {
            Start::Run => return Ok(Next::Run(None)),
            Start::OnTrial(t) => return Ok(Next::Run(Some(t))),
            Start::Exec(binary) => {
                info!(binary = %binary.display(), "starting the newer installed agent");
                return Ok(Next::Exec {
                    binary,
                    trial: false,
                });
            }
            Start::Launch(mut t) => {
                if let Err(why) = runnable(&t.binary) {
                    // Exec'd anyway, the C library would hand it to /bin/sh as a script.
                    heal(&state, &SlotLayout::new(config.state_dir.clone()), &t, &why)?;
                    continue;
                }
                make_executable(&t.binary)?;
                t.launched = true;
                save(&config.state_dir, &t)?;
                info!(version = %t.version, binary = %t.binary.display(), "handing over to the new agent");
                return Ok(Next::Exec {
                    binary: t.binary,
                    trial: true,
                });
            }
            Start::Heal(t) => heal(
                &state,
                &SlotLayout::new(config.state_dir.clone()),
                &t,
                "did not prove itself (connect, report, pass the health check) before it stopped",
            )?,
        }
    }
    anyhow::bail!("the agent's self-update did not settle; see the log")
}

/// Replaces this process with `binary`, with the same arguments and environment. Returns
/// only when that fails.
pub fn exec(binary: &Path) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(binary)
        .args(std::env::args_os().skip(1))
        .exec()
}

/// Undoes a trial that failed: the agent model's switch is rolled back, its version held
/// back and the rollback reported; then the trial is removed.
fn heal(state: &StateFile, layout: &SlotLayout, trial: &Trial, why: &str) -> Result<()> {
    if layout.in_probation(&trial.model)?.as_ref() != Some(&trial.version) {
        // No switch awaits this trial (the old agent stopped before switching, or the
        // journal was lost): nothing to undo or hold.
        warn!(version = %trial.version, "dropping a self-update trial with no switch in probation");
        return clear(layout.root());
    }
    let message = format!(
        "the new agent {} {why}; the previous agent is back",
        trial.version
    );
    warn!(version = %trial.version, "{message}");
    let slots = {
        let _lock = state.lock()?;
        layout
            .abort_probation(&trial.model)
            .with_context(|| format!("cannot roll back {}", trial.model))?
    };
    let error = InstallError {
        version: trial.version.clone(),
        kind: ErrorKind::HealthCheck,
        message: message.clone(),
        at: unix_now(),
    };
    state.update(|s| {
        let m = s.model(&trial.model);
        m.holds.retain(|h| h.version != trial.version);
        m.holds.push(Hold {
            version: trial.version.clone(),
            reason: message.clone(),
        });
        m.last_error = Some(error.clone());
        s.push_event(
            &trial.model,
            EventKind::HealthRollback {
                from: trial.version.clone(),
                to: slots.current.clone(),
                error,
            },
            unix_now(),
        );
    })?;
    clear(layout.root())
}

/// Whether `binary` is a program this machine runs: an ELF file of this process's class,
/// byte order and machine, or a script (`#!`). Anything else fails its trial without being
/// exec'd.
fn runnable(binary: &Path) -> Result<(), String> {
    fn header(path: &Path) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::with_capacity(20);
        std::fs::File::open(path)?
            .take(20)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }
    let new = header(binary).map_err(|e| format!("cannot be read ({e})"))?;
    if new.starts_with(b"#!") {
        return Ok(());
    }
    let ours =
        header(Path::new("/proc/self/exe")).map_err(|e| format!("cannot be compared ({e})"))?;
    let elf_id =
        |h: &[u8]| (h.len() == 20 && h.starts_with(b"\x7fELF")).then(|| [h[4], h[5], h[18], h[19]]);
    match (elf_id(&new), elf_id(&ours)) {
        (Some(a), Some(b)) if a == b => Ok(()),
        (Some(_), _) => Err("is a program for another machine".into()),
        (None, _) => Err("is not a program (neither ELF nor a #! script)".into()),
    }
}

/// The agent model's installed, confirmed current version and its binary.
fn confirmed_install(config: &Config, model: &ModelName) -> Option<(Version, PathBuf)> {
    let layout = SlotLayout::new(config.state_dir.clone());
    if layout.in_probation(model).ok()?.is_some() {
        return None;
    }
    let version = layout.slots(model).ok()?.current?;
    let profile = config.device_profile();
    let variant = crate::fetch::installed_variant(&layout, model, &version, &profile)?;
    let binary = layout.artifact_path(model, &version, variant.file_name.as_ref());
    Some((version, std::fs::canonicalize(&binary).unwrap_or(binary)))
}

/// This process's binary, resolved.
fn own_binary() -> PathBuf {
    std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .unwrap_or_default()
}

/// Lets the agent run an installed agent binary: the installed file's shared mode
/// ([`crate::access::SHARED_FILE`]) with the execute bits of its owner and group.
fn make_executable(binary: &Path) -> Result<()> {
    crate::access::set_mode(binary, crate::access::SHARED_FILE | 0o110)
        .with_context(|| format!("cannot make {} executable", binary.display()))
}

/// The trial on disk, if any. An unreadable one is treated as a launched trial of nothing:
/// removed, with an error logged, so that the agent starts.
pub fn load(state_dir: &Path) -> Result<Option<Trial>> {
    let path = state_dir.join(TRIAL_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    match crate::stored::decode(&bytes, crate::stored::TRIAL_FORMAT) {
        Ok(trial) => Ok(Some(trial)),
        Err(e) => {
            error!(path = %path.display(), "ignoring an unreadable self-update trial: {e}");
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            Ok(None)
        }
    }
}

/// Writes the trial durably.
pub fn save(state_dir: &Path, trial: &Trial) -> Result<()> {
    let path = state_dir.join(TRIAL_FILE);
    let bytes =
        crate::stored::encode(trial, crate::stored::TRIAL_FORMAT).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Removes the trial (durably).
pub fn clear(state_dir: &Path) -> Result<()> {
    let path = state_dir.join(TRIAL_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => crate::fsutil::fsync_dir(state_dir)
            .with_context(|| format!("cannot sync {}", state_dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn trial(launched: bool) -> Trial {
        Trial {
            model: "ferry-agent".parse().unwrap(),
            version: v("2.0.0"),
            binary: "/state/versions/ferry-agent/2.0.0/ferry-agent".into(),
            launched,
            deadline: 0,
        }
    }

    #[test]
    fn a_pending_trial_is_launched_by_whoever_starts() {
        let t = trial(false);
        for me in [
            "/usr/bin/ferry-agent",
            "/state/versions/ferry-agent/2.0.0/ferry-agent",
        ] {
            assert_eq!(
                decide(Some(&t), Path::new(me), None, &v("0.1.0")),
                Start::Launch(t.clone())
            );
        }
    }

    #[test]
    fn a_launched_trial_runs_its_own_binary_and_heals_in_any_other() {
        let t = trial(true);
        assert_eq!(
            decide(Some(&t), &t.binary, None, &v("0.1.0")),
            Start::OnTrial(t.clone())
        );
        assert_eq!(
            decide(
                Some(&t),
                Path::new("/usr/bin/ferry-agent"),
                None,
                &v("0.1.0")
            ),
            Start::Heal(t.clone())
        );
    }

    #[test]
    fn a_confirmed_install_runs_when_newer_than_this_binary() {
        let me = Path::new("/usr/bin/ferry-agent");
        let installed = Path::new("/state/versions/ferry-agent/1.0.0/ferry-agent");
        assert_eq!(
            decide(None, me, Some((&v("1.0.0"), installed)), &v("0.1.0")),
            Start::Exec(installed.to_owned())
        );
        // A package upgraded past it wins; the installed binary itself just runs.
        assert_eq!(
            decide(None, me, Some((&v("1.0.0"), installed)), &v("1.0.0")),
            Start::Run
        );
        assert_eq!(
            decide(None, installed, Some((&v("1.0.0"), installed)), &v("0.1.0")),
            Start::Run
        );
        assert_eq!(decide(None, me, None, &v("0.1.0")), Start::Run);
    }

    #[test]
    fn a_trial_without_a_switch_in_probation_is_dropped_without_holding_anything() {
        let dir = tempfile::tempdir().unwrap();
        let (state, layout) = (
            StateFile::new(dir.path()),
            SlotLayout::new(dir.path().to_owned()),
        );
        let t = trial(true);
        save(dir.path(), &t).unwrap();
        heal(&state, &layout, &t, "failed").unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let memory = state.load().unwrap();
        assert!(
            memory
                .models
                .get(&t.model)
                .is_none_or(|m| m.holds.is_empty()),
            "{memory:?}"
        );
    }

    #[test]
    fn only_a_program_for_this_machine_is_runnable() {
        let dir = tempfile::tempdir().unwrap();
        let ours = std::fs::read("/proc/self/exe").unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        assert_eq!(runnable(&write("same", &ours[..64])), Ok(()));
        assert_eq!(runnable(&write("script", b"#!/bin/sh\nexit 0\n")), Ok(()));
        let mut other = ours[..64].to_vec();
        other[18] ^= 0xff; // another e_machine
        let err = runnable(&write("other", &other)).unwrap_err();
        assert!(err.contains("another machine"), "{err}");
        for bytes in [&b"plain text, no #!"[..], b"", b"\x7fELF"] {
            let err = runnable(&write("text", bytes)).unwrap_err();
            assert!(err.contains("not a program"), "{err}");
        }
        assert!(runnable(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_trial_survives_a_write_and_read_and_an_unreadable_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        save(dir.path(), &trial(true)).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(trial(true)));
        clear(dir.path()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join(TRIAL_FILE), b"{ torn").unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        assert!(!dir.path().join(TRIAL_FILE).exists());
    }
}
