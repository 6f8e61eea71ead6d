//! The schema's versions and the migrations between them, kept in the repository
//! (`migrations/NNNN_name.sql`), applied in order at open under a session lock, each in its
//! own transaction with the row that records it; a schema newer than this build knows is
//! refused by name. After migrating, every table the store declares is checked to exist with
//! its key shape, so a migration that forgot one fails at open, not at first use.

use super::super::{ShapeKind, TableId};
use super::connection::Lease;
use super::sql::SCHEMA;
use crate::store::StoreError;

/// Every migration, in order: version, name, statements.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "tables", include_str!("migrations/0001_tables.sql")),
    (2, "leases", include_str!("migrations/0002_leases.sql")),
    (3, "live", include_str!("migrations/0003_live.sql")),
    (
        4,
        "signed snapshots",
        include_str!("migrations/0004_signed_snapshots.sql"),
    ),
    (5, "fences", include_str!("migrations/0005_fences.sql")),
    (
        6,
        "experiments",
        include_str!("migrations/0006_experiments.sql"),
    ),
    (
        7,
        "device pins",
        include_str!("migrations/0007_device_pins.sql"),
    ),
    (
        8,
        "gate samples",
        include_str!("migrations/0008_gate_samples.sql"),
    ),
    (
        9,
        "device transfers",
        include_str!("migrations/0009_device_transfers.sql"),
    ),
];

/// The advisory lock that lets one node migrate at a time.
const MIGRATION_LOCK: i64 = 0x6665_7272_795f_6d69; // "ferry_mi"

/// Brings the schema to this build's version.
pub(super) fn migrate(lease: &Lease<'_>) -> Result<(), StoreError> {
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    let result = lease.call(move |session| {
        let client = &mut session.client;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
        let applied = (|| {
            client.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {SCHEMA};
                 CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())"
            ))?;
            let found: i32 = client
                .query_one(
                    &format!("SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_migrations"),
                    &[],
                )?
                .try_get(0)?;
            if found > newest {
                return Ok(Err(found));
            }
            for &(version, name, statements) in MIGRATIONS.iter().filter(|m| m.0 > found) {
                let mut txn = client.transaction()?;
                txn.batch_execute(statements)?;
                txn.execute(
                    &format!(
                        "INSERT INTO {SCHEMA}.schema_migrations (version, name) VALUES ($1, $2)"
                    ),
                    &[&version, &name],
                )?;
                txn.commit()?;
                tracing::info!("database schema migrated to version {version} ({name})");
            }
            Ok(Ok(()))
        })();
        client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
        applied
    })?;
    result.map_err(|found| StoreError::TooNew {
        found: u64::try_from(found).unwrap_or(0),
        supported: u64::try_from(newest).unwrap_or(0),
    })
}

/// Checks that every table in `tables` exists with `tables`' key shape.
pub(super) fn check(lease: &Lease<'_>, tables: &[TableId]) -> Result<(), StoreError> {
    let columns: Vec<(String, String, String)> = lease.call(|session| {
        let rows = session.client.query(
            "SELECT table_name::text, column_name::text, data_type::text
               FROM information_schema.columns WHERE table_schema = $1",
            &[&SCHEMA],
        )?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    })?;
    for table in tables {
        let expected: &[(&str, &str)] = match table.kind {
            ShapeKind::Text => &[("k", "text")],
            ShapeKind::TextPair => &[("k1", "text"), ("k2", "text")],
            ShapeKind::Number => &[("k", "bigint")],
            ShapeKind::TextNumber => &[("k1", "text"), ("k2", "bigint")],
        };
        for &(column, kind) in expected.iter().chain(&[("v", "bytea")]) {
            let present = columns
                .iter()
                .any(|(t, c, k)| t == table.name && c == column && k == kind);
            if !present {
                return Err(StoreError::Engine(format!(
                    "table {SCHEMA}.{} lacks its column {column} ({kind}): the schema's migrations do not match this build",
                    table.name
                )));
            }
        }
    }
    Ok(())
}
