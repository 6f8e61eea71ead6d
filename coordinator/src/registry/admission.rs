//! One question, asked by every path that points devices at a release (moving an alias,
//! creating a rollout, a promotion that moves `prod` or starts its rollout): may these
//! devices be pointed at this version? [`admit`] answers it once, in this order:
//!
//! 1. the release can be served: not expired (every device would refuse it) and its bytes
//!    not freed by retention;
//! 2. while `[stages.production]` gates production, `prod` points only at a release in
//!    production or deprecated (to roll back); a promotion is the move that puts it there;
//! 3. it fits the applications of the devices it would reach (their schemas), unless forced;
//!    then the note to audit is the answer.

use ferry_shared::rollout::Selector;
use ferry_shared::{AliasName, ModelName, Version};

use crate::registry::error::RegistryError;
use crate::registry::schema_fit::check_fit;
use crate::rules::access::PRODUCTION_ALIAS;
use crate::store::Store;

/// Devices about to be pointed at a release.
pub struct Pointing<'a> {
    /// The model.
    pub model: &'a ModelName,
    /// The alias the devices follow.
    pub alias: &'a AliasName,
    /// The release they would run.
    pub version: &'a Version,
    /// Only the devices within this cohort, when given (a rollout's).
    pub cohort: Option<&'a Selector>,
    /// What points them.
    pub by: By,
    /// Past the schema check (the refusal becomes a note).
    pub force: bool,
    /// Unix seconds, for the expiry check.
    pub now: u64,
}

/// What points the devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// An alias move or a rollout: the release must already be allowed to serve.
    AliasOrRollout,
    /// A promotion to production: the move itself makes the release one that may serve.
    Promotion,
    /// An A/B experiment's split: a release on trial serves a share of the cohort before any
    /// promotion (the point of the trial); it reaches everyone only through the experiment's
    /// decision, which promotes it through the production stage's gates.
    Experiment,
}

/// Whether the devices may be pointed at the release: `Ok(None)` when they may, `Ok(Some(note))`
/// when a schema misfit was forced past (the note belongs in the audit entry), else why not.
/// `production_gated`: the configuration has a `[stages.production]` policy.
pub(crate) fn admit(
    store: &Store,
    production_gated: bool,
    pointing: &Pointing<'_>,
) -> Result<Option<String>, RegistryError> {
    let Pointing {
        model,
        alias,
        version,
        cohort,
        by,
        force,
        now,
    } = *pointing;
    refuse_unservable(store, model, version, now)?;
    if by == By::AliasOrRollout && production_gated {
        refuse_unpromoted(store, model, alias, version)?;
    }
    check_fit(store, model, alias, version, cohort, force)
}

/// Refuses a release devices could not get: expired, or with its bytes freed by retention.
fn refuse_unservable(
    store: &Store,
    model: &ModelName,
    version: &Version,
    now: u64,
) -> Result<(), RegistryError> {
    if let Some(purge) = store.purge_of(model, version)? {
        return Err(RegistryError::Invalid(format!(
            "{model} {version}'s bytes were freed by retention ({}); it can no longer be installed",
            purge.why
        )));
    }
    match store.release(model, version)? {
        Some((release, _)) if release.is_expired(now) => Err(RegistryError::Invalid(format!(
            "{model} {version} expired at {} (revision {}): devices would refuse it; \
             extend it first with `ferryctl releases resign {model} {version} --key KEY`",
            release.expires, release.revision
        ))),
        _ => Ok(()),
    }
}

/// Refuses to point `prod` at a release that is neither in production nor deprecated (other
/// aliases are free).
fn refuse_unpromoted(
    store: &Store,
    model: &ModelName,
    alias: &AliasName,
    version: &Version,
) -> Result<(), RegistryError> {
    if alias.as_str() != PRODUCTION_ALIAS {
        return Ok(());
    }
    let Some(record) = store.stage(model, version)? else {
        // Unpublished: the store names that.
        return Ok(());
    };
    if record.stage.may_serve() {
        return Ok(());
    }
    Err(RegistryError::Invalid(format!(
        "{model} {version} is in {}: while [stages.production] gates production, `prod` points only at a release in production (or deprecated, to roll back); promote it with `ferryctl stage {model} {version} production`",
        record.stage
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{publish_bytes, setup};

    fn pointing<'a>(
        model: &'a ModelName,
        alias: &'a AliasName,
        version: &'a Version,
        by: By,
        now: u64,
    ) -> Pointing<'a> {
        Pointing {
            model,
            alias,
            version,
            cohort: None,
            by,
            force: false,
            now,
        }
    }

    #[test]
    fn an_expired_release_is_refused_and_prod_waits_for_production_unless_promoted() {
        let (_dir, store, key) = setup();
        publish_bytes(&store, &key, "1.0.0", b"model bytes");
        let model: ModelName = "detector".parse().unwrap();
        let (prod, staging): (AliasName, AliasName) =
            ("prod".parse().unwrap(), "staging".parse().unwrap());
        let v: Version = "1.0.0".parse().unwrap();
        let at = |alias, by, now| admit(&store, true, &pointing(&model, alias, &v, by, now));

        // Published at 1, expiring 1,000,000 s later: past that nothing may point at it.
        let expired = at(&staging, By::AliasOrRollout, 2_000_000).unwrap_err();
        assert!(expired.to_string().contains("expired"), "{expired}");
        let promoted_but_expired = at(&prod, By::Promotion, 2_000_000).unwrap_err();
        assert!(promoted_but_expired.to_string().contains("expired"));

        // In development: `prod` is refused while production is gated; other aliases, a
        // promotion (the move that puts it in production) and an ungated config are not.
        let unpromoted = at(&prod, By::AliasOrRollout, 10).unwrap_err();
        assert!(
            unpromoted.to_string().contains("is in development"),
            "{unpromoted}"
        );
        assert_eq!(at(&staging, By::AliasOrRollout, 10).unwrap(), None);
        assert_eq!(at(&prod, By::Promotion, 10).unwrap(), None);
        let ungated = admit(
            &store,
            false,
            &pointing(&model, &prod, &v, By::AliasOrRollout, 10),
        );
        assert_eq!(ungated.unwrap(), None);
    }
}
