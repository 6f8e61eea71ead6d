//! The boundary between the store's logic and the engine that keeps its rows.
//!
//! Everything the store knows (immutability, the audit chain, stage rules, record formats) is
//! written once, in the files beside this folder, against the typed transactions here: a
//! [`ReadTxn`] sees one consistent snapshot; a [`WriteTxn`] is the only writer while it lives
//! and commits all of its changes or none. An engine ([`Engine`]) provides exactly that over
//! ordered tables of byte values keyed by one of four key shapes ([`Shape`]): text, a pair of
//! texts, a number, or a text and a number. Keys order as redb orders them: texts bytewise,
//! tuples by their first part and then their second.
//!
//! Two engines implement the traits: [`redb`] (one file, the embedded default) and
//! [`postgres`] (shared by several coordinators); every store test runs against both.

pub(crate) mod postgres;
pub(crate) mod redb;

use std::fmt;

use super::StoreError;
use super::codec::{Record, decode};

/// The four key shapes a table can have, as an engine sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShapeKind {
    /// One text.
    Text,
    /// Two texts, ordered by the first, then the second.
    TextPair,
    /// One number (`u64`).
    Number,
    /// A text, then a number.
    TextNumber,
}

/// A key, borrowed, as an engine receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parts<'a> {
    /// A [`ShapeKind::Text`] key.
    Text(&'a str),
    /// A [`ShapeKind::TextPair`] key.
    TextPair(&'a str, &'a str),
    /// A [`ShapeKind::Number`] key.
    Number(u64),
    /// A [`ShapeKind::TextNumber`] key.
    TextNumber(&'a str, u64),
}

/// A key, owned, as an engine hands it back from a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OwnedParts {
    /// A [`ShapeKind::Text`] key.
    Text(String),
    /// A [`ShapeKind::TextPair`] key.
    TextPair(String, String),
    /// A [`ShapeKind::Number`] key.
    Number(u64),
    /// A [`ShapeKind::TextNumber`] key.
    TextNumber(String, u64),
}

impl OwnedParts {
    /// The key, borrowed.
    pub(crate) fn borrowed(&self) -> Parts<'_> {
        match self {
            OwnedParts::Text(k) => Parts::Text(k),
            OwnedParts::TextPair(a, b) => Parts::TextPair(a, b),
            OwnedParts::Number(n) => Parts::Number(*n),
            OwnedParts::TextNumber(a, n) => Parts::TextNumber(a, *n),
        }
    }
}

impl Parts<'_> {
    /// The key, owned.
    pub(crate) fn owned(&self) -> OwnedParts {
        match *self {
            Parts::Text(k) => OwnedParts::Text(k.to_owned()),
            Parts::TextPair(a, b) => OwnedParts::TextPair(a.to_owned(), b.to_owned()),
            Parts::Number(n) => OwnedParts::Number(n),
            Parts::TextNumber(a, n) => OwnedParts::TextNumber(a.to_owned(), n),
        }
    }

    /// The shape of this key.
    pub(crate) fn kind(&self) -> ShapeKind {
        match self {
            Parts::Text(_) => ShapeKind::Text,
            Parts::TextPair(..) => ShapeKind::TextPair,
            Parts::Number(_) => ShapeKind::Number,
            Parts::TextNumber(..) => ShapeKind::TextNumber,
        }
    }
}

/// A key shape, typed: how the store's code names keys of a table.
pub(crate) trait Shape {
    /// The engine's name for it.
    const KIND: ShapeKind;
    /// A key, borrowed.
    type Ref<'a>: Copy;
    /// A key, owned (what scans yield).
    type Owned;
    /// The key, for the engine.
    fn parts<'a>(key: Self::Ref<'a>) -> Parts<'a>;
    /// The key an engine scanned back; `None` when its shape is not this one.
    fn owned(parts: OwnedParts) -> Option<Self::Owned>;
    /// The key as a person reads it, in errors.
    fn describe(key: Self::Ref<'_>) -> String;
    /// An owned key as a person reads it, in errors.
    fn describe_owned(key: &Self::Owned) -> String;
    /// The first part of an owned key, when it is a text (what [`Rows::records_within`]
    /// groups by).
    fn first_text(_key: &Self::Owned) -> Option<&str> {
        None
    }
}

/// Keys of one text.
pub(crate) struct Text;
/// Keys of two texts.
pub(crate) struct TextPair;
/// Keys of one number.
pub(crate) struct Number;
/// Keys of a text and a number.
pub(crate) struct TextNumber;

impl Shape for Text {
    const KIND: ShapeKind = ShapeKind::Text;
    type Ref<'a> = &'a str;
    type Owned = String;
    fn parts<'a>(key: Self::Ref<'a>) -> Parts<'a> {
        Parts::Text(key)
    }
    fn owned(parts: OwnedParts) -> Option<String> {
        match parts {
            OwnedParts::Text(k) => Some(k),
            _ => None,
        }
    }
    fn describe(key: &str) -> String {
        key.to_owned()
    }
    fn describe_owned(key: &String) -> String {
        key.clone()
    }
    fn first_text(key: &String) -> Option<&str> {
        Some(key)
    }
}

impl Shape for TextPair {
    const KIND: ShapeKind = ShapeKind::TextPair;
    type Ref<'a> = (&'a str, &'a str);
    type Owned = (String, String);
    fn parts<'a>((a, b): Self::Ref<'a>) -> Parts<'a> {
        Parts::TextPair(a, b)
    }
    fn owned(parts: OwnedParts) -> Option<(String, String)> {
        match parts {
            OwnedParts::TextPair(a, b) => Some((a, b)),
            _ => None,
        }
    }
    fn describe((a, b): (&str, &str)) -> String {
        format!("{a} {b}")
    }
    fn describe_owned((a, b): &(String, String)) -> String {
        format!("{a} {b}")
    }
    fn first_text(key: &(String, String)) -> Option<&str> {
        Some(&key.0)
    }
}

impl Shape for Number {
    const KIND: ShapeKind = ShapeKind::Number;
    type Ref<'a> = u64;
    type Owned = u64;
    fn parts<'a>(key: Self::Ref<'a>) -> Parts<'a> {
        Parts::Number(key)
    }
    fn owned(parts: OwnedParts) -> Option<u64> {
        match parts {
            OwnedParts::Number(k) => Some(k),
            _ => None,
        }
    }
    fn describe(key: u64) -> String {
        key.to_string()
    }
    fn describe_owned(key: &u64) -> String {
        key.to_string()
    }
}

impl Shape for TextNumber {
    const KIND: ShapeKind = ShapeKind::TextNumber;
    type Ref<'a> = (&'a str, u64);
    type Owned = (String, u64);
    fn parts<'a>((a, n): Self::Ref<'a>) -> Parts<'a> {
        Parts::TextNumber(a, n)
    }
    fn owned(parts: OwnedParts) -> Option<(String, u64)> {
        match parts {
            OwnedParts::TextNumber(a, n) => Some((a, n)),
            _ => None,
        }
    }
    fn describe((a, n): (&str, u64)) -> String {
        format!("{a} {n}")
    }
    fn describe_owned((a, n): &(String, u64)) -> String {
        format!("{a} {n}")
    }
    fn first_text(key: &(String, u64)) -> Option<&str> {
        Some(&key.0)
    }
}

/// A table of byte values: its name and, by type, its key shape.
pub(crate) struct Table<K> {
    /// The table's name in every engine.
    pub(crate) name: &'static str,
    shape: std::marker::PhantomData<fn() -> K>,
}

impl<K> Clone for Table<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for Table<K> {}

impl<K: Shape> Table<K> {
    /// Declares a table.
    pub(crate) const fn new(name: &'static str) -> Self {
        Self {
            name,
            shape: std::marker::PhantomData,
        }
    }

    /// The table as an engine names it.
    pub(crate) fn id(self) -> TableId {
        TableId {
            name: self.name,
            kind: K::KIND,
        }
    }
}

/// A table as an engine sees it: a name and a key shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableId {
    /// The table's name.
    pub(crate) name: &'static str,
    /// Its key shape.
    pub(crate) kind: ShapeKind,
}

/// A table of numbers keyed by text: the store's own counters and facts
/// (`store_format`, `snapshot_version`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counters {
    /// The table's name in every engine.
    pub(crate) name: &'static str,
}

/// Where a scan starts and which way it walks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scan<'a> {
    /// The first key visited (inclusive); from the table's start (or end, backward) when
    /// `None`.
    pub(crate) from: Option<Parts<'a>>,
    /// Walks from the largest key down.
    pub(crate) backward: bool,
}

/// A row, owned: its key in the table's shape and its raw value.
pub(crate) type Row<K> = (<K as Shape>::Owned, Vec<u8>);

/// Told each visited row: `true` to go on, `false` to stop.
pub(crate) type Visit<'v> = dyn FnMut(OwnedParts, &[u8]) -> Result<bool, StoreError> + 'v;

/// What an engine's transactions offer for reading; a write transaction sees its own writes.
pub(crate) trait ReadOps {
    /// The value under `key`.
    fn get(&self, table: TableId, key: Parts<'_>) -> Result<Option<Vec<u8>>, StoreError>;
    /// The values under many text `keys` of one table, in the keys' order. Engines that
    /// pay a round trip per statement answer it in one; the default asks key by key.
    fn get_many(&self, table: TableId, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        text_keyed(table)?;
        keys.iter()
            .map(|k| self.get(table, Parts::Text(k)))
            .collect()
    }
    /// Visits rows in key order from where `scan` says, until `visit` says stop.
    fn scan(&self, table: TableId, scan: Scan<'_>, visit: &mut Visit<'_>)
    -> Result<(), StoreError>;
    /// A counter's value.
    fn counter(&self, table: Counters, name: &str) -> Result<Option<u64>, StoreError>;
    /// Every counter of `table`, by name.
    fn counters(&self, table: Counters) -> Result<Vec<(String, u64)>, StoreError>;
}

/// What an engine's write transactions add. Nothing is visible to other transactions until
/// [`WriteOps::commit`]; a transaction dropped without commit changes nothing.
pub(crate) trait WriteOps: ReadOps {
    /// Sets `key` to `value`.
    fn insert(&self, table: TableId, key: Parts<'_>, value: &[u8]) -> Result<(), StoreError>;
    /// Sets many text keys of one table, each to its value; a key given twice ends with its
    /// last value. Engines that pay a round trip per statement write them in one; the
    /// default writes row by row.
    fn insert_many(&self, table: TableId, rows: &[(&str, &[u8])]) -> Result<(), StoreError> {
        text_keyed(table)?;
        rows.iter()
            .try_for_each(|(k, v)| self.insert(table, Parts::Text(k), v))
    }
    /// Removes `key`; whether it was there.
    fn remove(&self, table: TableId, key: Parts<'_>) -> Result<bool, StoreError>;
    /// Sets a counter.
    fn set_counter(&self, table: Counters, name: &str, value: u64) -> Result<(), StoreError>;
    /// Tells other coordinators, once this transaction commits, that the audit trail grew
    /// (engines shared by several coordinators; others do nothing).
    fn announce_change(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Lets the commit return before the engine's disk has it (a crash may lose this
    /// transaction, never half of it, and never an earlier durable one).
    fn relax_durability(&mut self) -> Result<(), StoreError>;
    /// Makes every change visible at once, durably unless relaxed.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
    /// This transaction, for reading.
    fn reads(&self) -> &dyn ReadOps;
}

/// An engine: where transactions begin.
pub(crate) trait Engine: Send + Sync {
    /// Begins a read transaction over one consistent snapshot.
    fn begin_read(&self) -> Result<Box<dyn ReadOps + '_>, StoreError>;
    /// Begins the one write transaction (waiting for the current writer to finish).
    fn begin_write(&self) -> Result<Box<dyn WriteOps + '_>, StoreError>;
    /// Why the last commit failed, while no commit has succeeded since.
    fn write_failure(&self) -> Option<String>;
    /// The engine and where its data lives, for logs.
    fn describe(&self) -> String;
    /// Whether other coordinators may write to it too.
    fn shared(&self) -> bool;
    /// Calls `wake` whenever another coordinator's transaction that grew the audit trail
    /// commits (as soon as the engine hears of it; engines one coordinator owns never call
    /// it). Best effort: a follower still reads the trail now and then without it.
    fn on_change(&self, wake: Box<dyn Fn() + Send + Sync>) -> Result<(), StoreError> {
        drop(wake);
        Ok(())
    }
}

/// Refuses a batched operation ([`ReadOps::get_many`], [`WriteOps::insert_many`]) on a table
/// whose keys are not one text.
pub(crate) fn text_keyed(table: TableId) -> Result<(), StoreError> {
    if table.kind == ShapeKind::Text {
        Ok(())
    } else {
        Err(StoreError::Engine(format!(
            "{}: batched reads and writes take text keys only",
            table.name
        )))
    }
}

/// A read transaction.
pub(crate) struct ReadTxn<'e>(Box<dyn ReadOps + 'e>);

/// The write transaction.
pub(crate) struct WriteTxn<'e>(Box<dyn WriteOps + 'e>, Appends<'e>);

/// The audit entries a write transaction appended, and where they go once it commits.
struct Appends<'e> {
    appended: std::cell::RefCell<Vec<u64>>,
    journal: Option<&'e OwnAppends>,
}

/// The audit entries this process appended (committed), by sequence number, until the
/// follower of other coordinators' changes has passed them (see
/// [`crate::store::Store::take_own_append`]).
#[derive(Default)]
pub(crate) struct OwnAppends(std::sync::Mutex<std::collections::BTreeSet<u64>>);

impl OwnAppends {
    /// Whether this process appended entry `seq`, forgetting it and every earlier one.
    pub(crate) fn take(&self, seq: u64) -> bool {
        let mut own = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = own.remove(&seq);
        *own = own.split_off(&seq);
        mine
    }
}

impl<'e> ReadTxn<'e> {
    /// Begins one on `engine`.
    pub(crate) fn begin(engine: &'e dyn Engine) -> Result<Self, StoreError> {
        engine.begin_read().map(Self)
    }
}

impl<'e> WriteTxn<'e> {
    /// Begins one on `engine`; once it commits, the audit entries it appended are noted in
    /// `journal`.
    pub(crate) fn begin(
        engine: &'e dyn Engine,
        journal: Option<&'e OwnAppends>,
    ) -> Result<Self, StoreError> {
        let appends = Appends {
            appended: Default::default(),
            journal,
        };
        engine.begin_write().map(|ops| Self(ops, appends))
    }

    /// Notes that this transaction appended audit entry `seq`.
    pub(crate) fn appended(&self, seq: u64) {
        self.1.appended.borrow_mut().push(seq);
    }

    /// Sets `key` to the raw `value`.
    pub(crate) fn insert_raw<K: Shape>(
        &self,
        table: Table<K>,
        key: K::Ref<'_>,
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.0.insert(table.id(), K::parts(key), value)
    }

    /// Sets `key` to `record`, encoded.
    pub(crate) fn insert<K: Shape, T: Record>(
        &self,
        table: Table<K>,
        key: K::Ref<'_>,
        record: &T,
    ) -> Result<(), StoreError> {
        self.insert_raw(table, key, &super::codec::encode(record))
    }

    /// Sets each text key of `rows` to its record, encoded, in as few statements as the
    /// engine allows.
    pub(crate) fn insert_many<T: Record>(
        &self,
        table: Table<Text>,
        rows: &[(&str, &T)],
    ) -> Result<(), StoreError> {
        let encoded: Vec<(&str, Vec<u8>)> = rows
            .iter()
            .map(|(k, record)| (*k, super::codec::encode(*record)))
            .collect();
        let borrowed: Vec<(&str, &[u8])> =
            encoded.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        self.0.insert_many(table.id(), &borrowed)
    }

    /// Removes `key`; whether it was there.
    pub(crate) fn remove<K: Shape>(
        &self,
        table: Table<K>,
        key: K::Ref<'_>,
    ) -> Result<bool, StoreError> {
        self.0.remove(table.id(), K::parts(key))
    }

    /// Sets a counter.
    pub(crate) fn set_counter(
        &self,
        table: Counters,
        name: &str,
        value: u64,
    ) -> Result<(), StoreError> {
        self.0.set_counter(table, name, value)
    }

    /// The engine's writing operations, for copies that move rows as they are.
    pub(crate) fn raw(&self) -> &dyn WriteOps {
        &*self.0
    }

    /// See [`WriteOps::relax_durability`].
    pub(crate) fn relax_durability(&mut self) -> Result<(), StoreError> {
        self.0.relax_durability()
    }

    /// Commits every change at once.
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        if !self.1.appended.borrow().is_empty() {
            self.0.announce_change()?;
        }
        self.0.commit()?;
        if let Some(journal) = self.1.journal {
            let mut own = journal
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            own.extend(self.1.appended.into_inner());
        }
        Ok(())
    }
}

/// Typed reading, the same in read and write transactions.
pub(crate) trait Rows {
    /// The engine's reading operations.
    fn ops(&self) -> &dyn ReadOps;

    /// The raw value under `key`.
    fn get_raw<K: Shape>(
        &self,
        table: Table<K>,
        key: K::Ref<'_>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.ops().get(table.id(), K::parts(key))
    }

    /// The records under many text `keys`, decoded, in the keys' order.
    fn get_many<T: Record>(
        &self,
        table: Table<Text>,
        keys: &[&str],
    ) -> Result<Vec<Option<T>>, StoreError> {
        let values = self.ops().get_many(table.id(), keys)?;
        if values.len() != keys.len() {
            return Err(StoreError::Engine(format!(
                "{}: {} values for {} keys",
                table.name,
                values.len(),
                keys.len()
            )));
        }
        keys.iter()
            .zip(values)
            .map(|(key, value)| match value {
                Some(bytes) => decode(table.name, &Described((*key).to_owned()), &bytes).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// Whether `key` has a value.
    fn contains<K: Shape>(&self, table: Table<K>, key: K::Ref<'_>) -> Result<bool, StoreError> {
        Ok(self.get_raw(table, key)?.is_some())
    }

    /// The record under `key`, decoded (a stored record that does not decode is an error that
    /// names the table and key).
    fn get<K: Shape, T: Record>(
        &self,
        table: Table<K>,
        key: K::Ref<'_>,
    ) -> Result<Option<T>, StoreError> {
        match self.get_raw(table, key)? {
            Some(bytes) => decode(table.name, &Described(K::describe(key)), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Visits raw rows in key order from `from` (inclusive; the start when `None`), until
    /// `visit` returns `false`.
    fn scan_raw<K: Shape>(
        &self,
        table: Table<K>,
        from: Option<K::Ref<'_>>,
        mut visit: impl FnMut(K::Owned, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let scan = Scan {
            from: from.map(K::parts),
            backward: false,
        };
        self.ops().scan(table.id(), scan, &mut |parts, value| {
            visit(owned::<K>(table, parts)?, value)
        })
    }

    /// Every record of the table from `from` on, decoded, with its key: the listing loop of
    /// every table, written once.
    fn records<K: Shape, T: Record>(
        &self,
        table: Table<K>,
        from: Option<K::Ref<'_>>,
    ) -> Result<Vec<(K::Owned, T)>, StoreError> {
        let mut out = Vec::new();
        self.scan_raw(table, from, |key, value| {
            let record = decode(table.name, &Described(K::describe_owned(&key)), value)?;
            out.push((key, record));
            Ok(true)
        })?;
        Ok(out)
    }

    /// The records whose key starts with the text `first`, from `from` on (the first part of
    /// `from` must be `first`), in key order.
    fn records_within<K: Shape, T: Record>(
        &self,
        table: Table<K>,
        first: &str,
        from: K::Ref<'_>,
    ) -> Result<Vec<(K::Owned, T)>, StoreError> {
        let mut out = Vec::new();
        self.scan_raw(table, Some(from), |key, value| {
            if K::first_text(&key) != Some(first) {
                return Ok(false);
            }
            let record = decode(table.name, &Described(K::describe_owned(&key)), value)?;
            out.push((key, record));
            Ok(true)
        })?;
        Ok(out)
    }

    /// The row with the largest key.
    fn last_raw<K: Shape>(&self, table: Table<K>) -> Result<Option<Row<K>>, StoreError> {
        let mut last = None;
        let scan = Scan {
            from: None,
            backward: true,
        };
        self.ops().scan(table.id(), scan, &mut |parts, value| {
            last = Some((owned::<K>(table, parts)?, value.to_vec()));
            Ok(false)
        })?;
        Ok(last)
    }

    /// A counter's value.
    fn counter(&self, table: Counters, name: &str) -> Result<Option<u64>, StoreError> {
        self.ops().counter(table, name)
    }
}

impl Rows for ReadTxn<'_> {
    fn ops(&self) -> &dyn ReadOps {
        &*self.0
    }
}

impl Rows for WriteTxn<'_> {
    fn ops(&self) -> &dyn ReadOps {
        self.0.reads()
    }
}

/// A scanned key in the table's shape, or the engine's mistake as a corrupt row.
fn owned<K: Shape>(table: Table<K>, parts: OwnedParts) -> Result<K::Owned, StoreError> {
    let shown = format!("{parts:?}");
    K::owned(parts).ok_or_else(|| StoreError::Corrupt {
        table: table.name,
        key: shown,
        reason: format!("the engine returned a key not of shape {:?}", K::KIND),
    })
}

/// A key already written out.
struct Described(String);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests;
