//! The shared engine: PostgreSQL, for several coordinators on one fleet.
//!
//! It gives the store what redb's single writer gives it on one machine, across every node:
//! a write transaction first takes one transaction-scoped advisory lock, so writers run one at
//! a time cluster-wide (the audit chain stays linear, a counter never repeats, an immutability
//! check and the insert it guards see the same rows), and runs at READ COMMITTED, so each of
//! its statements sees every write committed before the lock was granted (a REPEATABLE READ
//! snapshot would be taken by the lock statement itself, before the wait, and miss them). A
//! read transaction is one REPEATABLE READ, READ ONLY snapshot, as in redb. Tables are the
//! store's own, key columns by shape ([`sql`]), created by versioned migrations ([`schema`]).

mod connection;
mod schema;
mod sql;

use std::sync::{Mutex, PoisonError};

use postgres::types::ToSql;

use super::{Counters, Engine, OwnedParts, Parts, ReadOps, Scan, TableId, Visit, WriteOps};
use crate::store::StoreError;
use connection::{Lease, Pool};
use sql::{Param, SCHEMA};

/// The advisory lock every write transaction holds: one writer at a time, fleet-wide.
const WRITER_LOCK: i64 = 0x6665_7272_795f_7772; // "ferry_wr"

/// The channel on which a commit that grew the audit trail is announced.
const CHANGES: &str = "ferry_changes";

/// Listens for [`CHANGES`] on a connection of its own, calling `wake` for each, until the
/// process ends; reconnects (with a pause) when the connection is lost, waking once after
/// each reconnection for what it may have missed.
fn listen(
    config: &postgres::Config,
    tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
    wake: &(dyn Fn() + Send + Sync),
) {
    loop {
        match connection::connect(config, tls) {
            Ok(mut client) => {
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANGES}")) {
                    tracing::warn!("cannot listen for other coordinators' changes: {e}");
                } else {
                    wake();
                    use postgres::fallible_iterator::FallibleIterator;
                    let mut notifications = client.notifications();
                    let mut heard = notifications.blocking_iter();
                    loop {
                        match heard.next() {
                            Ok(Some(_)) => wake(),
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!("listening for changes stopped: {e}");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("cannot connect to listen for changes: {e}"),
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Rows fetched per round trip of a scan.
const PAGE: i64 = 512;

/// Connections one node opens at most.
const MAX_CONNECTIONS: usize = 16;

/// A PostgreSQL database, as the store's engine.
pub(crate) struct Postgres {
    pool: Pool,
    /// The server and database, without the password, for logs.
    shown: String,
    write_failure: Mutex<Option<String>>,
}

impl Postgres {
    /// Connects to `url` (`postgres://user[:password]@host:port/database[?sslmode=…]`) as
    /// `access` says, brings the schema to this build's version and checks it holds every
    /// table in `tables` (counters have one table of their own).
    pub(crate) fn open(
        url: &str,
        access: &PostgresAccess,
        tables: &[TableId],
    ) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Engine(format!("not a PostgreSQL address: {e}")))?;
        if let Some(password) = &access.password {
            config.password(password);
        }
        let tls = match &access.ca_pem {
            Some(pem) => Some(tls_with_roots(pem)?),
            None if config.get_ssl_mode() == postgres::config::SslMode::Require => {
                return Err(StoreError::Engine(
                    "sslmode=require needs the certificate authority that signed the server's certificate (store.metadata_ca_file)".into(),
                ));
            }
            None => None,
        };
        let shown = shown(&config);
        let engine = Self {
            pool: Pool::new(config, tls, MAX_CONNECTIONS),
            shown,
            write_failure: Mutex::new(None),
        };
        let lease = engine.pool.lease()?;
        schema::migrate(&lease)?;
        schema::check(&lease, tables)?;
        drop(lease);
        Ok(engine)
    }
}

/// How to reach the database beyond its address.
#[derive(Clone, Debug, Default)]
pub struct PostgresAccess {
    /// The password, replacing the address's.
    pub password: Option<String>,
    /// The certificate authority (PEM) the server's certificate must chain to: with it,
    /// connections use TLS (unless the address says `sslmode=disable`) and verify the server
    /// by the address's host name.
    pub ca_pem: Option<Vec<u8>>,
}

/// A TLS connector trusting only the certificates in `pem`.
fn tls_with_roots(pem: &[u8]) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |reason: String| {
        StoreError::Engine(format!("the database's certificate authority: {reason}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `user@host:port/database`.
fn shown(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    format!(
        "PostgreSQL {}@{}/{}",
        config.get_user().unwrap_or("(default user)"),
        hosts.join(","),
        config.get_dbname().unwrap_or("(default database)")
    )
}

impl Engine for Postgres {
    fn begin_read(&self) -> Result<Box<dyn ReadOps + '_>, StoreError> {
        let lease = self.pool.lease()?;
        let tx = Tx::begin(
            self,
            lease,
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        )?;
        Ok(Box::new(tx))
    }

    fn begin_write(&self) -> Result<Box<dyn WriteOps + '_>, StoreError> {
        let lease = self.pool.lease()?;
        let tx = Tx::begin(self, lease, "BEGIN ISOLATION LEVEL READ COMMITTED")?;
        tx.lease.call(|session| {
            session
                .client
                .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK])
        })?;
        Ok(Box::new(tx))
    }

    fn write_failure(&self) -> Option<String> {
        self.write_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn shared(&self) -> bool {
        true
    }

    fn on_change(&self, wake: Box<dyn Fn() + Send + Sync>) -> Result<(), StoreError> {
        let (config, tls) = self.pool.config();
        let (config, tls) = (config.clone(), tls.cloned());
        std::thread::Builder::new()
            .name("ferry-postgres-listen".into())
            .spawn(move || listen(&config, tls.as_ref(), &*wake))
            .map_err(|e| StoreError::Engine(format!("cannot start the listener thread: {e}")))?;
        Ok(())
    }
}

/// A transaction on a leased connection, rolled back when dropped unfinished.
struct Tx<'p> {
    /// Its engine, which keeps a failed commit for `/healthz`.
    engine: &'p Postgres,
    lease: Lease<'p>,
    open: bool,
}

impl<'p> Tx<'p> {
    fn begin(
        engine: &'p Postgres,
        mut lease: Lease<'p>,
        begin: &'static str,
    ) -> Result<Self, StoreError> {
        if let Err(e) = lease.call(move |session| session.client.batch_execute(begin)) {
            lease.spoil();
            return Err(e);
        }
        Ok(Self {
            engine,
            lease,
            open: true,
        })
    }

    /// Ends the transaction with `end` (`COMMIT` or `ROLLBACK`).
    fn end(&mut self, end: &'static str) -> Result<(), StoreError> {
        self.open = false;
        let result = self
            .lease
            .call(move |session| session.client.batch_execute(end));
        if result.is_err() {
            self.lease.spoil();
        }
        result
    }

    /// Runs one statement of `sql` with `key`'s parameters and `extra` ones after them.
    fn rows(
        &self,
        sql: String,
        params: Vec<Param>,
        extra: Vec<Param>,
    ) -> Result<Vec<postgres::Row>, StoreError> {
        self.lease.call(move |session| {
            let statement = session.statement(&sql)?;
            let all: Vec<&(dyn ToSql + Sync)> =
                params.iter().chain(&extra).map(Param::as_sql).collect();
            session.client.query(&statement, &all)
        })
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.end("ROLLBACK");
        }
    }
}

/// Reads the value column of a row (after `keys` key columns).
fn value_of(table: TableId, row: &postgres::Row) -> Result<Vec<u8>, StoreError> {
    let at = match table.kind {
        super::ShapeKind::Text | super::ShapeKind::Number => 1,
        super::ShapeKind::TextPair | super::ShapeKind::TextNumber => 2,
    };
    row.try_get(at).map_err(StoreError::Postgres)
}

impl ReadOps for Tx<'_> {
    fn get(&self, table: TableId, key: Parts<'_>) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.rows(sql::get(table), sql::params(table, key)?, Vec::new())?;
        match rows.first() {
            Some(row) => Ok(Some(row.try_get(0).map_err(StoreError::Postgres)?)),
            None => Ok(None),
        }
    }

    fn get_many(&self, table: TableId, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        super::text_keyed(table)?;
        let wanted: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        let text = sql::get_many(table);
        let rows = self.lease.call(move |session| {
            let statement = session.statement(&text)?;
            session.client.query(&statement, &[&wanted])
        })?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let key: String = row.try_get(0).map_err(StoreError::Postgres)?;
            let value: Vec<u8> = row.try_get(1).map_err(StoreError::Postgres)?;
            found.insert(key, value);
        }
        Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
    }

    fn scan(
        &self,
        table: TableId,
        scan: Scan<'_>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        let mut from: Option<OwnedParts> = scan.from.map(|p| p.owned());
        let mut inclusive = true;
        loop {
            let text = sql::scan(table, from.is_some(), inclusive, scan.backward);
            let params = match &from {
                Some(key) => sql::params(table, key.borrowed())?,
                None => Vec::new(),
            };
            let rows = self.rows(text, params, vec![Param::Number(PAGE)])?;
            let full = rows.len() as i64 == PAGE;
            for row in &rows {
                let key = sql::key_of(table, row).map_err(|e| StoreError::Corrupt {
                    table: table.name,
                    key: "(a scanned key)".into(),
                    reason: e.to_string(),
                })?;
                let value = value_of(table, row)?;
                if !visit(key.clone(), &value)? {
                    return Ok(());
                }
                from = Some(key);
            }
            if !full {
                return Ok(());
            }
            inclusive = false;
        }
    }

    fn counter(&self, table: Counters, name: &str) -> Result<Option<u64>, StoreError> {
        let rows = self.rows(
            format!("SELECT value FROM {SCHEMA}.counters WHERE tbl = $1 AND name = $2"),
            vec![Param::Text(table.name.into()), Param::Text(name.into())],
            Vec::new(),
        )?;
        match rows.first() {
            Some(row) => {
                let value: i64 = row.try_get(0).map_err(StoreError::Postgres)?;
                Ok(Some(
                    u64::try_from(value).map_err(|_| negative(table, name))?,
                ))
            }
            None => Ok(None),
        }
    }

    fn counters(&self, table: Counters) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self.rows(
            format!("SELECT name, value FROM {SCHEMA}.counters WHERE tbl = $1 ORDER BY name"),
            vec![Param::Text(table.name.into())],
            Vec::new(),
        )?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get(0).map_err(StoreError::Postgres)?;
                let value: i64 = row.try_get(1).map_err(StoreError::Postgres)?;
                let value = u64::try_from(value).map_err(|_| negative(table, &name))?;
                Ok((name, value))
            })
            .collect()
    }
}

fn negative(table: Counters, name: &str) -> StoreError {
    StoreError::Corrupt {
        table: table.name,
        key: name.to_owned(),
        reason: "a negative counter".into(),
    }
}

/// A [`Tx`] that took the writer lock (see [`Engine::begin_write`]) writes; read
/// transactions are handed out as [`ReadOps`] only.
impl WriteOps for Tx<'_> {
    fn insert(&self, table: TableId, key: Parts<'_>, value: &[u8]) -> Result<(), StoreError> {
        let value = value.to_vec();
        let params = sql::params(table, key)?;
        let text = sql::upsert(table);
        self.lease.call(move |session| {
            let statement = session.statement(&text)?;
            let mut all: Vec<&(dyn ToSql + Sync)> = params.iter().map(Param::as_sql).collect();
            all.push(&value);
            session.client.execute(&statement, &all)
        })?;
        Ok(())
    }

    fn insert_many(&self, table: TableId, rows: &[(&str, &[u8])]) -> Result<(), StoreError> {
        super::text_keyed(table)?;
        // One statement may not set a row twice: the last value of a repeated key wins, as
        // it would row by row.
        let mut last = std::collections::HashMap::with_capacity(rows.len());
        for (i, (key, _)) in rows.iter().enumerate() {
            last.insert(*key, i);
        }
        let (mut keys, mut values) = (Vec::with_capacity(last.len()), Vec::new());
        for (i, (key, value)) in rows.iter().enumerate() {
            if last.get(key) == Some(&i) {
                keys.push((*key).to_owned());
                values.push(value.to_vec());
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let text = sql::upsert_many(table);
        self.lease.call(move |session| {
            let statement = session.statement(&text)?;
            session.client.execute(&statement, &[&keys, &values])
        })?;
        Ok(())
    }

    fn remove(&self, table: TableId, key: Parts<'_>) -> Result<bool, StoreError> {
        let params = sql::params(table, key)?;
        let text = sql::delete(table);
        let removed = self.lease.call(move |session| {
            let statement = session.statement(&text)?;
            let all: Vec<&(dyn ToSql + Sync)> = params.iter().map(Param::as_sql).collect();
            session.client.execute(&statement, &all)
        })?;
        Ok(removed > 0)
    }

    fn set_counter(&self, table: Counters, name: &str, value: u64) -> Result<(), StoreError> {
        let value = i64::try_from(value)
            .map_err(|_| StoreError::Engine(format!("counter {name} past i64: {value}")))?;
        let (tbl, name) = (table.name.to_owned(), name.to_owned());
        self.lease.call(move |session| {
            session.client.execute(
                &format!(
                    "INSERT INTO {SCHEMA}.counters (tbl, name, value) VALUES ($1, $2, $3)
                     ON CONFLICT (tbl, name) DO UPDATE SET value = EXCLUDED.value"
                ),
                &[&tbl, &name, &value],
            )
        })?;
        Ok(())
    }

    fn announce_change(&self) -> Result<(), StoreError> {
        // Delivered when (and only if) the transaction commits; several in one collapse.
        self.lease
            .call(|session| session.client.batch_execute(&format!("NOTIFY {CHANGES}")))
    }

    fn relax_durability(&mut self) -> Result<(), StoreError> {
        self.lease.call(|session| {
            session
                .client
                .batch_execute("SET LOCAL synchronous_commit TO off")
        })
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let result = self.end("COMMIT");
        *self
            .engine
            .write_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            result.as_ref().err().map(ToString::to_string);
        result
    }

    fn reads(&self) -> &dyn ReadOps {
        self
    }
}
