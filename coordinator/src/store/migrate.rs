//! The store's format and the migrations between formats. The database records which format
//! it is in (`store_format` in the meta table; absent: format 1, before formats were counted).
//! Opening an older store migrates it in the same transaction that creates the tables, so a
//! crash leaves it wholly old or wholly new; a store from a newer build is refused by name.
//! Record types keep their old layouts here, private, for [`super::codec::Record::from_older`].

use std::collections::BTreeMap;

use ferry_shared::wire::{DeviceEvent, Follow, ModelReport};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::codec::Record;
use super::engine::{Rows, Table, Text, WriteTxn};
use super::records::DeviceRecord;
use super::rollouts::RolloutRecord;
use super::tables::{DEVICES, META, ROLLOUTS};

/// The format this build writes.
///
/// 1. The first.
/// 2. Device records say when each model's failure was first seen; rollout records when they
///    started to the millisecond.
/// 3. Rollout plans say what pinned and unreachable devices mean for completion.
/// 4. Device records keep the device's conditions (disk space, deferred switches); rollouts
///    may limit how many devices download at once.
pub const STORE_FORMAT: u64 = 4;

const FORMAT_KEY: &str = "store_format";

/// Brings the store to [`STORE_FORMAT`] inside `txn`; refuses a newer one. Returns the format
/// it found.
pub(crate) fn migrate(txn: &WriteTxn<'_>) -> Result<u64, StoreError> {
    // No format written: a store of the first format, or a new one.
    let found = txn.counter(META, FORMAT_KEY)?.unwrap_or(1);
    if found > STORE_FORMAT {
        return Err(StoreError::TooNew {
            found,
            supported: STORE_FORMAT,
        });
    }
    if found < 4 {
        rewrite::<DeviceRecord>(txn, DEVICES)?;
    }
    if found < 4 {
        rewrite::<RolloutRecord>(txn, ROLLOUTS)?;
    }
    if found != STORE_FORMAT {
        txn.set_counter(META, FORMAT_KEY, STORE_FORMAT)?;
    }
    Ok(found)
}

/// Rewrites every record of `table` (keyed by name) in the format this build writes.
fn rewrite<T: Record>(txn: &WriteTxn<'_>, table: Table<Text>) -> Result<(), StoreError> {
    for (key, record) in txn.records::<_, T>(table, None)? {
        txn.insert(table, key.as_str(), &record)?;
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct DeviceRecordV1 {
    public_key: [u8; 32],
    enrolled_at: u64,
    last_seen: u64,
    agent_version: String,
    labels: BTreeMap<String, String>,
    follows: Vec<Follow>,
    models: Vec<ModelReport>,
    events_through: u64,
    recent_events: Vec<DeviceEvent>,
}

/// [`DeviceRecord`] as format 2 stored it, before devices' conditions.
#[derive(Serialize, Deserialize)]
struct DeviceRecordV2 {
    public_key: [u8; 32],
    enrolled_at: u64,
    last_seen: u64,
    agent_version: String,
    labels: BTreeMap<String, String>,
    follows: Vec<Follow>,
    models: Vec<ModelReport>,
    events_through: u64,
    recent_events: Vec<DeviceEvent>,
    error_seen_at: BTreeMap<ferry_shared::ModelName, u64>,
}

/// A rollout plan as formats 1 and 2 stored it: nothing said of stragglers, which therefore
/// get the defaults (before, a pinned or gone device held its wave forever).
#[derive(Serialize, Deserialize)]
struct PlanV1 {
    id: String,
    model: ferry_shared::ModelName,
    target: ferry_shared::Version,
    cohort: ferry_shared::rollout::Selector,
    waves: Vec<ferry_shared::rollout::Wave>,
}

impl From<PlanV1> for ferry_shared::rollout::Plan {
    fn from(old: PlanV1) -> Self {
        Self {
            id: old.id,
            model: old.model,
            target: old.target,
            cohort: old.cohort,
            waves: old.waves,
            stragglers: Default::default(),
            max_downloading: None,
            switch_now: false,
        }
    }
}

/// A rollout plan as format 3 stored it: no download limit.
#[derive(Serialize, Deserialize)]
struct PlanV3 {
    id: String,
    model: ferry_shared::ModelName,
    target: ferry_shared::Version,
    cohort: ferry_shared::rollout::Selector,
    waves: Vec<ferry_shared::rollout::Wave>,
    stragglers: ferry_shared::rollout::Stragglers,
}

impl From<PlanV3> for ferry_shared::rollout::Plan {
    fn from(old: PlanV3) -> Self {
        Self {
            id: old.id,
            model: old.model,
            target: old.target,
            cohort: old.cohort,
            waves: old.waves,
            stragglers: old.stragglers,
            max_downloading: None,
            switch_now: false,
        }
    }
}

/// A rollout's state as formats 1 to 3 stored it: no download slots.
#[derive(Serialize, Deserialize)]
struct RolloutStateV1 {
    phase: ferry_shared::rollout::Phase,
    in_force: usize,
    since: u64,
    paused: bool,
    reason: Option<String>,
}

impl From<RolloutStateV1> for ferry_shared::rollout::RolloutState {
    fn from(old: RolloutStateV1) -> Self {
        Self {
            phase: old.phase,
            in_force: old.in_force,
            since: old.since,
            paused: old.paused,
            reason: old.reason,
            downloading: Vec::new(),
        }
    }
}

/// A rollout record as format 3 stored it: plan and state before download limits.
#[derive(Serialize, Deserialize)]
struct RolloutRecordV3 {
    plan: PlanV3,
    state: RolloutStateV1,
    alias: ferry_shared::AliasName,
    created_by: String,
    created_at: u64,
    created_at_ms: u64,
    updated_at: u64,
    final_gates: Vec<ferry_shared::rollout::GateReport>,
}

/// A rollout record as format 2 stored it: its plan in the layout of [`PlanV1`].
#[derive(Serialize, Deserialize)]
struct RolloutRecordV2 {
    plan: PlanV1,
    state: RolloutStateV1,
    alias: ferry_shared::AliasName,
    created_by: String,
    created_at: u64,
    created_at_ms: u64,
    updated_at: u64,
    final_gates: Vec<ferry_shared::rollout::GateReport>,
}

/// A rollout record as format 1 stored it: its start to the second only.
#[derive(Serialize, Deserialize)]
struct RolloutRecordV1 {
    plan: PlanV1,
    state: RolloutStateV1,
    alias: ferry_shared::AliasName,
    created_by: String,
    created_at: u64,
    updated_at: u64,
    final_gates: Vec<ferry_shared::rollout::GateReport>,
}

impl Record for RolloutRecord {
    /// 2: started to the millisecond. 3: stragglers in the plan. 4: download limits.
    const FORMAT: u8 = 4;

    fn from_older(format: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        match format {
            1 => Some(
                postcard::from_bytes::<RolloutRecordV1>(body).map(|old| RolloutRecord {
                    plan: old.plan.into(),
                    state: old.state.into(),
                    alias: old.alias,
                    created_by: old.created_by,
                    created_at: old.created_at,
                    created_at_ms: old.created_at.saturating_mul(1000),
                    updated_at: old.updated_at,
                    final_gates: old.final_gates,
                }),
            ),
            2 => Some(
                postcard::from_bytes::<RolloutRecordV2>(body).map(|old| RolloutRecord {
                    plan: old.plan.into(),
                    state: old.state.into(),
                    alias: old.alias,
                    created_by: old.created_by,
                    created_at: old.created_at,
                    created_at_ms: old.created_at_ms,
                    updated_at: old.updated_at,
                    final_gates: old.final_gates,
                }),
            ),
            3 => Some(
                postcard::from_bytes::<RolloutRecordV3>(body).map(|old| RolloutRecord {
                    plan: old.plan.into(),
                    state: old.state.into(),
                    alias: old.alias,
                    created_by: old.created_by,
                    created_at: old.created_at,
                    created_at_ms: old.created_at_ms,
                    updated_at: old.updated_at,
                    final_gates: old.final_gates,
                }),
            ),
            _ => None,
        }
    }
}

impl Record for DeviceRecord {
    /// 2: when each failure was first seen. 3: the device's conditions, and when each model
    /// last switched.
    const FORMAT: u8 = 3;

    fn from_older(format: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        match format {
            1 => Some(postcard::from_bytes::<DeviceRecordV1>(body).map(|old| {
                // A failure stored before failures were timed counts as seen when the device
                // last reported: the closest the old record knows.
                let error_seen_at = old
                    .models
                    .iter()
                    .filter(|m| m.last_error.is_some())
                    .map(|m| (m.model.clone(), old.last_seen.saturating_mul(1000)))
                    .collect();
                DeviceRecord {
                    public_key: old.public_key,
                    enrolled_at: old.enrolled_at,
                    last_seen: old.last_seen,
                    agent_version: old.agent_version,
                    labels: old.labels,
                    follows: old.follows,
                    models: old.models,
                    events_through: old.events_through,
                    recent_events: old.recent_events,
                    error_seen_at,
                    conditions: None,
                    switched_at: BTreeMap::new(),
                }
            })),
            2 => Some(
                postcard::from_bytes::<DeviceRecordV2>(body).map(|old| DeviceRecord {
                    public_key: old.public_key,
                    enrolled_at: old.enrolled_at,
                    last_seen: old.last_seen,
                    agent_version: old.agent_version,
                    labels: old.labels,
                    follows: old.follows,
                    models: old.models,
                    events_through: old.events_through,
                    recent_events: old.recent_events,
                    error_seen_at: old.error_seen_at,
                    conditions: None,
                    switched_at: BTreeMap::new(),
                }),
            ),
            _ => None,
        }
    }
}
