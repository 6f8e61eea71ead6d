//! The statements each engine operation runs, by table and key shape, and keys as statement
//! parameters (texts as `text COLLATE "C"`, numbers as `bigint`).

use postgres::types::ToSql;

use super::super::{OwnedParts, Parts, ShapeKind, TableId};
use crate::store::StoreError;

/// The schema every table is in.
pub(super) const SCHEMA: &str = "ferry";

/// A table's key columns.
fn key_columns(kind: ShapeKind) -> &'static [&'static str] {
    match kind {
        ShapeKind::Text | ShapeKind::Number => &["k"],
        ShapeKind::TextPair | ShapeKind::TextNumber => &["k1", "k2"],
    }
}

/// `(k1, k2)`, or `k`.
fn key_tuple(kind: ShapeKind) -> String {
    format!("({})", key_columns(kind).join(", "))
}

/// `($1, $2)` for a key of `kind`, its parameters from `first` on.
fn placeholders(kind: ShapeKind, first: usize) -> String {
    let n = key_columns(kind).len();
    let list: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

/// The value under a key.
pub(super) fn get(table: TableId) -> String {
    format!(
        "SELECT v FROM {SCHEMA}.{} WHERE {} = {}",
        table.name,
        key_tuple(table.kind),
        placeholders(table.kind, 1)
    )
}

/// Sets a key's value.
pub(super) fn upsert(table: TableId) -> String {
    let n = key_columns(table.kind).len();
    format!(
        "INSERT INTO {SCHEMA}.{t} ({cols}, v) VALUES ({params}, ${v}) \
         ON CONFLICT ({cols}) DO UPDATE SET v = EXCLUDED.v",
        t = table.name,
        cols = key_columns(table.kind).join(", "),
        params = (1..=n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", "),
        v = n + 1,
    )
}

/// The keys and values among the text keys in `$1` (a `text[]`) of a text-keyed table.
pub(super) fn get_many(table: TableId) -> String {
    format!(
        "SELECT k, v FROM {SCHEMA}.{} WHERE k = ANY($1::text[])",
        table.name
    )
}

/// Sets the text keys in `$1` (a `text[]`, no key twice) to the values in `$2` (a
/// `bytea[]`, in the same order) in a text-keyed table.
pub(super) fn upsert_many(table: TableId) -> String {
    format!(
        "INSERT INTO {SCHEMA}.{} (k, v) SELECT * FROM unnest($1::text[], $2::bytea[]) \
         ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
        table.name
    )
}

/// Removes a key.
pub(super) fn delete(table: TableId) -> String {
    format!(
        "DELETE FROM {SCHEMA}.{} WHERE {} = {}",
        table.name,
        key_tuple(table.kind),
        placeholders(table.kind, 1)
    )
}

/// One page of a scan: up to `$last` rows in key order (descending when `backward`), from
/// the key in the first parameters (`inclusive` or not), or from the table's start.
pub(super) fn scan(table: TableId, from: bool, inclusive: bool, backward: bool) -> String {
    let cols = key_columns(table.kind);
    let order: Vec<String> = cols
        .iter()
        .map(|c| format!("{c}{}", if backward { " DESC" } else { "" }))
        .collect();
    let bound = if from {
        let op = match (backward, inclusive) {
            (false, true) => ">=",
            (false, false) => ">",
            (true, true) => "<=",
            (true, false) => "<",
        };
        format!(
            "WHERE {} {op} {}",
            key_tuple(table.kind),
            placeholders(table.kind, 1)
        )
    } else {
        String::new()
    };
    let limit = if from { cols.len() + 1 } else { 1 };
    format!(
        "SELECT {}, v FROM {SCHEMA}.{} {bound} ORDER BY {} LIMIT ${limit}",
        cols.join(", "),
        table.name,
        order.join(", ")
    )
}

/// A key's parts as owned statement parameters.
pub(super) enum Param {
    Text(String),
    Number(i64),
}

impl Param {
    pub(super) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Text(text) => text,
            Param::Number(n) => n,
        }
    }
}

/// The parameters of `key`. Numbers past `i64::MAX` (which no store key reaches: sequence
/// numbers, versions and Unix times) are refused rather than wrapped.
pub(super) fn params(table: TableId, key: Parts<'_>) -> Result<Vec<Param>, StoreError> {
    let number = |n: u64| {
        i64::try_from(n)
            .map(Param::Number)
            .map_err(|_| StoreError::Engine(format!("key {n} in {} is past i64", table.name)))
    };
    Ok(match key {
        Parts::Text(k) => vec![Param::Text(k.to_owned())],
        Parts::TextPair(a, b) => vec![Param::Text(a.to_owned()), Param::Text(b.to_owned())],
        Parts::Number(n) => vec![number(n)?],
        Parts::TextNumber(a, n) => vec![Param::Text(a.to_owned()), number(n)?],
    })
}

/// The key of a scanned row.
pub(super) fn key_of(
    table: TableId,
    row: &postgres::Row,
) -> Result<OwnedParts, Box<dyn std::error::Error + Sync + Send>> {
    let number = |i: usize| -> Result<u64, Box<dyn std::error::Error + Sync + Send>> {
        let n: i64 = row.try_get(i)?;
        Ok(u64::try_from(n)?)
    };
    Ok(match table.kind {
        ShapeKind::Text => OwnedParts::Text(row.try_get(0)?),
        ShapeKind::TextPair => OwnedParts::TextPair(row.try_get(0)?, row.try_get(1)?),
        ShapeKind::Number => OwnedParts::Number(number(0)?),
        ShapeKind::TextNumber => OwnedParts::TextNumber(row.try_get(0)?, number(1)?),
    })
}
