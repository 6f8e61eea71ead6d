//! `ferry-agent install-bundle FILE`: checks that the file is a bundle of a model this device
//! follows, hands it to the daemon ([`super::request`]) and waits for the outcome in the
//! state the daemon keeps.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_shared::{ModelName, Version};

use super::{install, request};
use crate::config::Config;
use crate::state::StateFile;

/// How an `install-bundle` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The device already runs the bundle's release.
    AlreadyRunning(ModelName, Version),
    /// The daemon is not running: it installs the bundle when it starts.
    Queued(ModelName, Version),
    /// Handed over; not waited for.
    HandedOver(ModelName, Version),
    /// Installed, switched to and confirmed (the daemon's record of it).
    Installed(ModelName, Version, String),
}

/// Why a bundle of `model` cannot be installed on this device: a model it does not follow,
/// or the agent's own (a new agent proves itself by reaching the coordinator, which an
/// offline device cannot: it would fail its trial, roll back and hold the version).
pub fn not_installable(config: &Config, model: &ModelName) -> Option<String> {
    if config
        .self_update
        .as_ref()
        .is_some_and(|s| &s.model == model)
    {
        return Some(
            "the agent's own updates need the coordinator (a new agent proves itself by connecting to it)"
                .into(),
        );
    }
    let followed: Vec<String> = config
        .follows()
        .into_iter()
        .map(|(m, _)| m.to_string())
        .collect();
    (!followed.iter().any(|m| m == model.as_str()))
        .then(|| format!("this device follows {}", followed.join(", ")))
}

/// Hands the bundle at `bundle` to the daemon; with a `wait`, waits that long for the
/// release to be installed, checked and confirmed, and fails with the daemon's reason when it
/// is refused or rolled back.
pub fn run(config: &Config, bundle: &Path, wait: Duration) -> Result<Outcome> {
    let path = std::fs::canonicalize(bundle)
        .with_context(|| format!("cannot find {}", bundle.display()))?;
    let (_, header) = install::open(&path).map_err(anyhow::Error::msg)?;
    let (model, version) = (header.model.clone(), header.release.version.clone());
    if let Some(why) = not_installable(config, &model) {
        bail!("the bundle carries {model} {version}: {why}");
    }
    if !header.sealed_for.is_empty() {
        // Said here rather than after the hand-over: the bundle is not for this device.
        let identity = crate::identity::load(&config.state_dir)
            .context("the bundle is sealed, and this device has no identity key yet")?;
        install::content_key(&header, &identity)
            .map_err(|why| anyhow::anyhow!("{model} {version} not installed: {why}"))?;
    }
    let running = || -> Result<Option<crate::status::ModelStatus>> {
        Ok(crate::status::gather(config)?
            .models
            .into_iter()
            .find(|m| m.model == model.as_str()))
    };
    if running()?.is_some_and(|m| m.current.as_ref() == Some(&version) && m.in_probation.is_none())
    {
        return Ok(Outcome::AlreadyRunning(model, version));
    }
    // What the daemon records next is the answer: a failure or update other than these.
    let before = running()?.map(|m| (m.last_error, m.last_update));
    let (error_before, update_before) = before.unwrap_or_default();
    request::submit(&config.state_dir, &path).with_context(|| {
        format!(
            "cannot hand the bundle over in {}",
            config.state_dir.display()
        )
    })?;
    if StateFile::new(&config.state_dir).daemon_lock()?.is_some() {
        return Ok(Outcome::Queued(model, version));
    }
    if wait.is_zero() {
        return Ok(Outcome::HandedOver(model, version));
    }
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let Some(status) = running()? else { continue };
        if let Some(u) = &status.last_update
            && u.to == version
            && status.last_update != update_before
        {
            if u.outcome.starts_with("installed") {
                return Ok(Outcome::Installed(model, version, u.outcome.clone()));
            }
            bail!("{model} {version}: {}", u.outcome);
        }
        if let Some(e) = &status.last_error
            && e.version == version
            && status.last_error != error_before
        {
            bail!("{model} {version} not installed: {}: {}", e.kind, e.message);
        }
    }
    bail!(
        "the agent has not finished installing {model} {version} within {}s; `ferry-agent status` shows how it goes",
        wait.as_secs()
    )
}
