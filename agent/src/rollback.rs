//! `ferry-agent rollback`: flips `current` and `previous` on the device, at once and without
//! the coordinator. The version rolled back from is held (not reinstalled until the
//! coordinator asks for a different version) and the rollback is reported on the next
//! connection. Works whether or not the daemon runs: both take the state-directory lock.

use std::time::Instant;

use anyhow::{Result, bail};
use ferry_shared::wire::EventKind;

use crate::config::Config;
use crate::slots::{SlotError, SlotLayout};
use crate::state::{StateFile, UpdateRecord};
use crate::unix_now;
use crate::updater::Hold;

/// What a rollback did.
#[derive(Debug)]
pub struct RolledBack {
    /// The model rolled back.
    pub model: ferry_shared::ModelName,
    /// Version before.
    pub from: ferry_shared::Version,
    /// Version now.
    pub to: ferry_shared::Version,
    /// How long the switch took.
    pub elapsed: std::time::Duration,
}

/// Tells the model server to load the version the rollback returned to, when a reload hook
/// is configured: `Ok(false)` when none is.
pub fn reload(config: &Config, done: &RolledBack) -> Result<bool, String> {
    let Some(hook) = config
        .settings_of(&done.model)
        .and_then(|m| m.reload.as_ref())
    else {
        return Ok(false);
    };
    let layout = SlotLayout::new(config.state_dir.clone());
    let installed = crate::program::Installed::current(
        &layout,
        &done.model,
        &done.to,
        &config.device_profile(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the reload: {e}"))?;
    runtime
        .block_on(hook.run(&done.model, &done.to, &installed))
        .map(|()| true)
}

/// Performs the local rollback of `model` (the first model configured when `None`).
pub fn run(config: &Config, model: Option<&ferry_shared::ModelName>) -> Result<RolledBack> {
    let layout = SlotLayout::new(config.state_dir.clone());
    let state = StateFile::new(&config.state_dir);
    let model = match model {
        None => &config.main().model,
        Some(m) if config.settings_of(m).is_some() => m,
        Some(m) => bail!(
            "this device does not follow {m} (it follows {})",
            config
                .models
                .iter()
                .map(|m| m.model.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let _lock = state.lock()?;
    let started = Instant::now();
    let slots = layout.slots(model)?;
    let Some(from) = slots.current else {
        bail!("{model} has no current version on this device");
    };
    let Some(to) = slots.previous else {
        return Err(SlotError::NoPrevious {
            model: model.to_string(),
        }
        .into());
    };
    layout.switch(model, &to, false)?;
    let elapsed = started.elapsed();
    let now = unix_now();
    state.update_locked(|s| {
        s.push_event(
            model,
            EventKind::LocalRollback {
                from: from.clone(),
                to: to.clone(),
            },
            now,
        );
        let m = s.model(model);
        m.holds.retain(|h| h.version != from);
        m.holds.push(Hold {
            version: from.clone(),
            reason: "rolled back locally by an operator".into(),
        });
        m.last_update = Some(UpdateRecord {
            from: Some(from.clone()),
            to: to.clone(),
            at: now,
            duration_ms: elapsed.as_millis() as u64,
            outcome: "rolled back locally".into(),
            transfer: None,
        });
    })?;
    Ok(RolledBack {
        model: model.clone(),
        from,
        to,
        elapsed,
    })
}
