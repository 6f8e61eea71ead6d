//! Aliases: named pointers (`prod`, `staging`, `latest`, …) from a model to one of its versions.
//! Moving one is how a fleet is told to change; each move is audited with who, when and why.

use ferry_shared::{AliasName, ModelName, Version};
use redb::{ReadableTable, WriteTransaction};

use super::audit::{Change, append};
use super::codec::{decode, encode};
use super::records::AliasRecord;
use super::tables::{ALIASES, RELEASES};
use super::{Store, StoreError};

/// Writes an alias and its audit entry within `txn`; returns the version it pointed at before.
pub(crate) fn set_alias_in(
    txn: &WriteTransaction,
    model: &ModelName,
    alias: &AliasName,
    record: AliasRecord,
) -> Result<Option<Version>, StoreError> {
    let previous = {
        let mut table = txn.open_table(ALIASES)?;
        let key = (model.as_str(), alias.as_str());
        let previous = match table.get(key)? {
            Some(v) => Some(decode::<AliasRecord>("aliases", alias, v.value())?.version),
            None => None,
        };
        table.insert(key, encode(&record).as_slice())?;
        previous
    };
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
        let txn = self.db.begin_write()?;
        {
            let releases = txn.open_table(RELEASES)?;
            let version = record.version.to_string();
            if releases.get((model.as_str(), version.as_str()))?.is_none() {
                return Err(StoreError::NoSuchRelease {
                    name: model.to_string(),
                    version,
                });
            }
        }
        let previous = set_alias_in(&txn, model, alias, record)?;
        self.db.commit(txn)?;
        Ok(previous)
    }

    /// Where `model@alias` points.
    pub fn alias(
        &self,
        model: &ModelName,
        alias: &AliasName,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ALIASES)?;
        match table.get((model.as_str(), alias.as_str()))? {
            Some(v) => Ok(Some(decode("aliases", alias, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every alias (of one model, when given), by model then alias.
    pub fn aliases(
        &self,
        model: Option<&ModelName>,
    ) -> Result<Vec<(ModelName, AliasName, AliasRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ALIASES)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let (m, a) = k.value();
            if model.is_some_and(|n| n.as_str() != m) {
                continue;
            }
            let corrupt = |e: ferry_shared::name::NameError| StoreError::Corrupt {
                table: "aliases",
                key: format!("{m}@{a}"),
                reason: e.to_string(),
            };
            out.push((
                m.parse().map_err(corrupt)?,
                a.parse().map_err(corrupt)?,
                decode("aliases", &a, v.value())?,
            ));
        }
        Ok(out)
    }
}
