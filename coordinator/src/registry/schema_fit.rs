//! Whether a release fits the application on a device: the input schema the application
//! sends must be one the release accepts, and the output schema the release produces one
//! the application reads. Devices announce both as labels ([`SENDS_LABEL`],
//! [`READS_LABEL`], or per model, `app.reads@tokenizer`, which wins for that model); releases
//! declare theirs in their signed metadata. What is undeclared on either side is not judged.
//!
//! Moving an alias or starting a rollout to a release that does not fit some of the devices
//! it would reach is refused unless forced: rolling a model back past a schema change is a
//! coordinated rollback (the applications first), not a model rollback alone.

use std::collections::BTreeMap;

use ferry_shared::rollout::Selector;
use ferry_shared::schema::{READS_LABEL, SENDS_LABEL, SchemaRange, SchemaRef, announced};
use ferry_shared::{AliasName, ModelName, Release, Version};

use crate::registry::error::RegistryError;
use crate::store::Store;

/// Why `release` does not fit a device with `labels`, or `None` when it does (or when either
/// side leaves the schemas undeclared).
pub(crate) fn misfit(release: &Release, labels: &BTreeMap<String, String>) -> Option<String> {
    let m = &release.metadata;
    let sends =
        announced(labels, SENDS_LABEL, &release.name).and_then(|s| s.parse::<SchemaRef>().ok());
    let accepts = m
        .accepts_input
        .as_deref()
        .and_then(|r| r.parse::<SchemaRange>().ok())
        .or_else(|| {
            m.input_schema
                .as_deref()
                .and_then(|s| s.parse::<SchemaRef>().ok())
                .map(|s| SchemaRange::exactly(&s))
        });
    if let (Some(sends), Some(accepts)) = (&sends, &accepts)
        && !accepts.contains(sends)
    {
        return Some(format!(
            "its application sends {sends}; {} accepts {accepts}",
            release.version
        ));
    }
    let reads =
        announced(labels, READS_LABEL, &release.name).and_then(|s| s.parse::<SchemaRange>().ok());
    let produces = m
        .output_schema
        .as_deref()
        .and_then(|s| s.parse::<SchemaRef>().ok());
    if let (Some(reads), Some(produces)) = (&reads, &produces)
        && !reads.contains(produces)
    {
        return Some(format!(
            "its application reads {reads}; {} produces {produces}",
            release.version
        ));
    }
    None
}

/// Checks `version` against the devices following `model@alias` (within `cohort`, when
/// given). Refused when any does not fit, unless `force`; then the note to audit.
pub(crate) fn check_fit(
    store: &Store,
    model: &ModelName,
    alias: &AliasName,
    version: &Version,
    cohort: Option<&Selector>,
    force: bool,
) -> Result<Option<String>, RegistryError> {
    let Some((release, _)) = store.release(model, version)? else {
        // Unpublished: the store says so.
        return Ok(None);
    };
    let misfits: Vec<(String, String)> = store
        .devices()?
        .into_iter()
        .filter(|(_, r)| {
            r.follows
                .iter()
                .any(|f| &f.model == model && &f.alias == alias)
                && cohort.is_none_or(|c| c.matches(&r.labels))
        })
        .filter_map(|(id, r)| misfit(&release, &r.labels).map(|why| (id.to_string(), why)))
        .collect();
    let Some((first, why)) = misfits.first() else {
        return Ok(None);
    };
    let summary = format!(
        "{} device(s) following {model}@{alias} do not fit {version}: device {first}: {why}{}",
        misfits.len(),
        if misfits.len() > 1 { ", …" } else { "" }
    );
    if force {
        return Ok(Some(format!("forced past schema checks: {summary}")));
    }
    Err(RegistryError::Invalid(format!(
        "{summary}. Move their applications first (a coordinated rollback), or force it"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(input: &str, accepts: Option<&str>, output: &str) -> Release {
        let mut release = ferry_shared::testutil::release("m", "1.0.0");
        release.metadata.input_schema = Some(input.into());
        release.metadata.accepts_input = accepts.map(Into::into);
        release.metadata.output_schema = Some(output.into());
        release
    }

    fn device(sends: Option<&str>, reads: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        if let Some(s) = sends {
            labels.insert(SENDS_LABEL.into(), s.into());
        }
        if let Some(r) = reads {
            labels.insert(READS_LABEL.into(), r.into());
        }
        labels
    }

    #[test]
    fn a_models_own_schema_label_wins_over_the_devices() {
        let produces_v2 = release("tx/v3", None, "score/v2");
        let mut labels = device(None, Some("score/v2"));
        assert_eq!(misfit(&produces_v2, &labels), None);
        // The application reads model m's output as v1: that is what counts for m.
        labels.insert("app.reads@m".into(), "score/v1".into());
        assert!(misfit(&produces_v2, &labels).is_some_and(|w| w.contains("reads score/v1")));
        // Another model's label is not m's concern.
        let mut other = device(None, None);
        other.insert("app.reads@n".into(), "score/v1".into());
        assert_eq!(misfit(&produces_v2, &other), None);
    }

    #[test]
    fn input_and_output_schemas_must_both_fit() {
        let old = release("tx/v2", None, "score/v1");
        let wide = release("tx/v3", Some("tx/v2..v3"), "score/v2");
        let app_v3 = device(Some("tx/v3"), Some("score/v1..v2"));
        let why = misfit(&old, &app_v3).unwrap();
        assert!(
            why.contains("sends tx/v3") && why.contains("accepts tx/v2"),
            "{why}"
        );
        assert_eq!(misfit(&wide, &app_v3), None);
        assert_eq!(
            misfit(&wide, &device(Some("tx/v2"), None)),
            None,
            "v2 in range"
        );
        let why = misfit(&wide, &device(Some("tx/v3"), Some("score/v1"))).unwrap();
        assert!(why.contains("produces score/v2"), "{why}");
        assert_eq!(
            misfit(&old, &device(None, None)),
            None,
            "undeclared: not judged"
        );
        assert!(
            misfit(&old, &device(Some("other/v1"), None)).is_some(),
            "another schema family never fits"
        );
    }
}
