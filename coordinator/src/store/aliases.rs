//! Aliases: named pointers (`prod`, `staging`, `latest`, …) from a model to one of its versions.
//! Moving one is how a fleet is told to change; each move is audited with who, when and why.

use ferry_shared::{AliasName, ModelName, Version};

use super::audit::{Change, append};
use super::engine::{Rows, WriteTxn};
use super::records::AliasRecord;
use super::tables::{ALIASES, RELEASES};
use super::{Store, StoreError};

/// Writes an alias and its audit entry within `txn`; returns the version it pointed at before.
pub(crate) fn set_alias_in(
    txn: &WriteTxn<'_>,
    model: &ModelName,
    alias: &AliasName,
    record: AliasRecord,
) -> Result<Option<Version>, StoreError> {
    let key = (model.as_str(), alias.as_str());
    let previous = txn.get::<_, AliasRecord>(ALIASES, key)?.map(|r| r.version);
    txn.insert(ALIASES, key, &record)?;
    let from = previous
        .as_ref()
        .map_or_else(|| "(unset)".to_owned(), Version::to_string);
    let reason = record
        .reason
        .as_deref()
        .map_or_else(String::new, |r| format!("; reason: {r}"));
    append(
        txn,
        Change {
            at: record.set_at,
            actor: &record.set_by,
            action: "alias.set",
            subject: format!("{model}@{alias}"),
            detail: format!("{from} -> {}{reason}", record.version),
        },
    )?;
    Ok(previous)
}

impl Store {
    /// Points `model@alias` at `record.version`, which must be published. Returns the previous
    /// target.
    pub fn set_alias(
        &self,
        model: &ModelName,
        alias: &AliasName,
        record: AliasRecord,
    ) -> Result<Option<Version>, StoreError> {
        let txn = self.write()?;
        let version = record.version.to_string();
        if !txn.contains(RELEASES, (model.as_str(), version.as_str()))? {
            return Err(StoreError::NoSuchRelease {
                name: model.to_string(),
                version,
            });
        }
        let previous = set_alias_in(&txn, model, alias, record)?;
        txn.commit()?;
        Ok(previous)
    }

    /// Where `model@alias` points.
    pub fn alias(
        &self,
        model: &ModelName,
        alias: &AliasName,
    ) -> Result<Option<AliasRecord>, StoreError> {
        self.read()?.get(ALIASES, (model.as_str(), alias.as_str()))
    }

    /// Every alias (of one model, when given), by model then alias.
    pub fn aliases(
        &self,
        model: Option<&ModelName>,
    ) -> Result<Vec<(ModelName, AliasName, AliasRecord)>, StoreError> {
        let txn = self.read()?;
        let rows: Vec<((String, String), AliasRecord)> = match model {
            Some(m) => txn.records_within(ALIASES, m.as_str(), (m.as_str(), ""))?,
            None => txn.records(ALIASES, None)?,
        };
        rows.into_iter()
            .map(|((m, a), record)| {
                let corrupt = |e: ferry_shared::name::NameError| StoreError::Corrupt {
                    table: "aliases",
                    key: format!("{m}@{a}"),
                    reason: e.to_string(),
                };
                Ok((
                    m.parse().map_err(corrupt)?,
                    a.parse().map_err(corrupt)?,
                    record,
                ))
            })
            .collect()
    }
}
