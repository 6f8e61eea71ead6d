//! Rollout plans from what operators write: a `POST /api/v1/rollouts` body, or the plan file
//! a promotion to production starts, checked before anything runs.

use ferry_shared::rollout::{BUCKETS, Gate, Plan, RolloutState, Selector, Wave};
use ferry_shared::{AliasName, ModelName, Version};

use crate::api::CreateRollout;
use crate::rules::access::PRODUCTION_ALIAS;
use crate::store::rollouts::RolloutRecord;

/// The longest a wave may bake.
const MAX_BAKE_SECS: u64 = 90 * 86_400;

/// The plan a request describes.
pub(crate) fn plan_of(request: &CreateRollout) -> Result<Plan, String> {
    let model: ModelName = request
        .model
        .parse()
        .map_err(|e: ferry_shared::name::NameError| e.to_string())?;
    let cohort = Selector::parse(&request.cohort).map_err(|e| e.to_string())?;
    let id = request
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", request.model, request.version));
    if id.is_empty()
        || id.len() > 128
        || id.contains(['/', ' '])
        || id.chars().any(char::is_control)
    {
        return Err(format!(
            "rollout id {id:?} must be 1–128 characters without '/' or spaces"
        ));
    }
    let mut plan = Plan::with_default_waves(&id, model, request.version.clone(), cohort);
    if let Some(waves) = &request.waves {
        plan.waves = waves
            .iter()
            .map(|w| {
                if !(w.percent > 0.0 && w.percent <= 100.0) {
                    return Err(format!("wave share {} % is outside (0, 100]", w.percent));
                }
                if w.bake_secs > MAX_BAKE_SECS {
                    return Err(format!(
                        "a wave bakes at most {MAX_BAKE_SECS} s (90 days), not {}",
                        w.bake_secs
                    ));
                }
                Ok(Wave {
                    share: ((w.percent * 100.0).round() as u32).min(BUCKETS),
                    min_bake_secs: w.bake_secs,
                    gates: w.gates.clone().unwrap_or_else(Gate::defaults),
                    shadow: w.shadow,
                    needs_approval: w.approval,
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(secs) = request.unreachable_after_secs {
        if secs > MAX_BAKE_SECS {
            return Err(format!(
                "unreachable_after_secs is at most {MAX_BAKE_SECS} (90 days), not {secs}"
            ));
        }
        plan.stragglers.unreachable_after_secs = secs;
    }
    plan.max_downloading = request.max_downloading;
    plan.switch_now = request.now;
    if let Some(percent) = request.max_left_out_percent {
        plan.stragglers.max_left_out = percent / 100.0;
    }
    plan.validate().map_err(|e| e.to_string())?;
    Ok(plan)
}

/// The rollout a promotion to production starts: the waves, gates and cohort of the plan
/// file (a `POST /api/v1/rollouts` body; its model and version, if any, give way to the
/// release's), moving `prod`. Read and checked at start-up too, so a broken file is found then.
pub(crate) fn promotion_plan(
    file: &std::path::Path,
    model: &ModelName,
    version: &Version,
) -> Result<Plan, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the rollout plan {}: {e}", file.display()))?;
    let mut body: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("rollout plan {}: {e}", file.display()))?;
    let fields = body
        .as_object_mut()
        .ok_or_else(|| format!("rollout plan {}: not a JSON object", file.display()))?;
    fields.insert("model".into(), model.to_string().into());
    fields.insert("version".into(), version.to_string().into());
    fields.remove("id");
    let request: CreateRollout = serde_json::from_value(body)
        .map_err(|e| format!("rollout plan {}: {e}", file.display()))?;
    if request
        .alias
        .as_deref()
        .is_some_and(|a| a != PRODUCTION_ALIAS)
    {
        return Err(format!(
            "rollout plan {}: a promotion to production moves `{PRODUCTION_ALIAS}`, not {:?}",
            file.display(),
            request.alias
        ));
    }
    plan_of(&request).map_err(|e| format!("rollout plan {}: {e}", file.display()))
}

/// A new rollout's record, started at `now`. Its start is also taken to the millisecond, here:
/// failures devices report are ordered against it.
pub(crate) fn new_record(plan: Plan, alias: AliasName, actor: &str, now: u64) -> RolloutRecord {
    RolloutRecord {
        created_at_ms: crate::unix_now_ms().max(now.saturating_mul(1000)),
        state: RolloutState::start(&plan, now),
        plan,
        alias,
        created_by: actor.to_owned(),
        created_at: now,
        updated_at: now,
        final_gates: Vec::new(),
    }
}
