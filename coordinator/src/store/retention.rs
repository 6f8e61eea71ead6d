//! What garbage collection reads and writes in the database: the facts the planner needs
//! (every stored artifact with its chunks, which releases were purged), and a plan carried
//! out in one transaction: releases marked purged, dead artifact records dropped, each
//! audited. The chunk files go afterwards (see [`crate::registry::gc_apply`]); a crash in between
//! leaves
//! orphan files, which the next collection finds.

use std::collections::BTreeMap;

use ferry_shared::chunk::ChunkIndex;
use ferry_shared::{Digest, ModelName, Version};
use serde::{Deserialize, Serialize};

use super::audit::{Change, append};
use super::engine::Rows;
use super::records::BlobRecord;
use super::tables::{BLOBS, CHUNK_INDEXES, PURGED, TENSOR_LAYOUTS};
use super::{Store, StoreError};
use crate::rules::gc::{BlobFacts, GcPlan};

/// When and why a release's bytes were freed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecord {
    /// When (Unix seconds).
    pub at: u64,
    /// Who ran the collection.
    pub by: String,
    /// The policy that let them go.
    pub why: String,
}

impl Store {
    /// Every release whose bytes were freed.
    pub fn purged(&self) -> Result<BTreeMap<(ModelName, Version), PurgeRecord>, StoreError> {
        let rows: Vec<((String, String), PurgeRecord)> = self.read()?.records(PURGED, None)?;
        rows.into_iter()
            .map(|((model, version), record)| {
                let key = format!("{model} {version}");
                let corrupt = |reason: String| StoreError::Corrupt {
                    table: "purged",
                    key: key.clone(),
                    reason,
                };
                let model: ModelName = model
                    .parse()
                    .map_err(|e: ferry_shared::name::NameError| corrupt(e.to_string()))?;
                let version: Version = version
                    .parse()
                    .map_err(|e: ferry_shared::version::VersionError| corrupt(e.to_string()))?;
                Ok(((model, version), record))
            })
            .collect()
    }

    /// When `model` `version`'s bytes were freed, if they were.
    pub fn purge_of(
        &self,
        model: &ModelName,
        version: &Version,
    ) -> Result<Option<PurgeRecord>, StoreError> {
        let (m, v) = (model.to_string(), version.to_string());
        self.read()?.get(PURGED, (m.as_str(), v.as_str()))
    }

    /// Every stored artifact with its chunks.
    pub fn blob_facts(&self) -> Result<Vec<BlobFacts>, StoreError> {
        let txn = self.read()?;
        let blobs: Vec<(String, BlobRecord)> = txn.records(BLOBS, None)?;
        let mut out = Vec::with_capacity(blobs.len());
        for (hex, record) in blobs {
            let corrupt = |reason: String| StoreError::Corrupt {
                table: "chunk_indexes",
                key: hex.clone(),
                reason,
            };
            let hash: Digest = hex.parse().map_err(|_| corrupt("not a digest".into()))?;
            let index = txn
                .get_raw(CHUNK_INDEXES, hex.as_str())?
                .ok_or_else(|| corrupt("missing for a stored artifact".into()))?;
            let index = ChunkIndex::from_canonical_bytes(&index, record.size)
                .map_err(|e| corrupt(e.to_string()))?;
            out.push(BlobFacts {
                hash,
                added_at: record.added_at,
                chunks: index.chunks.iter().map(|c| c.hash).collect(),
            });
        }
        Ok(out)
    }

    /// Carries out the database half of `plan`: its releases marked purged and its dead
    /// artifacts' records dropped, audited, in one transaction.
    pub fn apply_purge(
        &self,
        plan: &GcPlan,
        by: &str,
        freed_bytes: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let txn = self.write()?;
        for r in &plan.purge {
            let (m, v) = (r.model.to_string(), r.version.to_string());
            let record = PurgeRecord {
                at: now,
                by: by.to_owned(),
                why: r.why.clone(),
            };
            txn.insert(PURGED, (m.as_str(), v.as_str()), &record)?;
        }
        for hash in &plan.blobs {
            let hex = hash.to_hex();
            txn.remove(BLOBS, hex.as_str())?;
            txn.remove(CHUNK_INDEXES, hex.as_str())?;
            txn.remove(TENSOR_LAYOUTS, hex.as_str())?;
        }
        for r in &plan.purge {
            append(
                &txn,
                Change {
                    at: now,
                    actor: by,
                    action: "gc.purge",
                    subject: format!("{} {}", r.model, r.version),
                    detail: format!("its bytes were freed: {}", r.why),
                },
            )?;
        }
        append(
            &txn,
            Change {
                at: now,
                actor: by,
                action: "gc",
                subject: "chunks".into(),
                detail: format!(
                    "{} release(s) purged, {} artifact(s) and {} chunk(s) dropped, {freed_bytes} bytes freed",
                    plan.purge.len(),
                    plan.blobs.len(),
                    plan.chunks.len()
                ),
            },
        )?;
        txn.commit()?;
        Ok(())
    }
}

super::codec::first_format!(PurgeRecord);
