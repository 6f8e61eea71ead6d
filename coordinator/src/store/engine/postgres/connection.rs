//! One PostgreSQL connection on a thread of its own, and the pool that lends them out.
//!
//! The store's callers are synchronous and may run on an async runtime's threads, where the
//! `postgres` crate's blocking client must not run (it drives its own runtime). So each
//! connection lives on its own thread, and a caller hands it work as closures, waiting for
//! the answer: to the caller, a call blocks as a disk read would.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, PoisonError};

use postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// A connection's client and its prepared statements, on the connection's thread.
pub(super) struct Session {
    pub(super) client: Client,
    prepared: HashMap<String, Statement>,
}

impl Session {
    /// `sql`, prepared once per connection.
    pub(super) fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

type Job = Box<dyn FnOnce(&mut Session) -> bool + Send>;

/// A connection, open on its thread.
pub(super) struct Connection {
    jobs: mpsc::Sender<Job>,
}

/// Connects as `config` says, over TLS verified against `tls`'s roots when given (and the
/// address's `sslmode` allows it), else in the clear.
pub(super) fn connect(
    config: &postgres::Config,
    tls: Option<&MakeRustlsConnect>,
) -> Result<Client, postgres::Error> {
    match tls {
        Some(tls) => config.connect(tls.clone()),
        None => config.connect(NoTls),
    }
}

impl Connection {
    fn open(
        config: &postgres::Config,
        tls: Option<&MakeRustlsConnect>,
    ) -> Result<Self, StoreError> {
        let (ready, opened) = mpsc::sync_channel(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let config = config.clone();
        let tls = tls.cloned();
        std::thread::Builder::new()
            .name("ferry-postgres".into())
            .spawn(move || {
                let client = match connect(&config, tls.as_ref()) {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        client
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let mut session = Session {
                    client,
                    prepared: HashMap::new(),
                };
                for job in queue {
                    if !job(&mut session) {
                        break;
                    }
                }
            })
            .map_err(|e| StoreError::Engine(format!("cannot start a connection thread: {e}")))?;
        match opened.recv() {
            Ok(Ok(())) => Ok(Self { jobs }),
            Ok(Err(e)) => Err(StoreError::Postgres(e)),
            Err(_) => Err(StoreError::Engine("the connection thread stopped".into())),
        }
    }

    /// Runs `work` on the connection's thread and waits for its answer. A connection the
    /// server closed is let go of after the call.
    pub(super) fn call<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Session) -> Result<R, postgres::Error> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |session| {
            let result = work(session);
            let open = !session.client.is_closed();
            let _ = reply.send(result);
            open
        });
        let gone = || StoreError::Engine("the database connection closed".into());
        self.jobs.send(job).map_err(|_| gone())?;
        answer
            .recv()
            .map_err(|_| gone())?
            .map_err(StoreError::Postgres)
    }

    /// Whether the connection's thread still runs (it stops once the server closed it).
    fn is_open(&self) -> bool {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |session| {
            let open = !session.client.is_closed();
            let _ = reply.send(open);
            open
        });
        self.jobs.send(job).is_ok() && answer.recv().unwrap_or(false)
    }
}

/// Connections lent out one at a time, at most `max` open.
pub(super) struct Pool {
    config: postgres::Config,
    tls: Option<MakeRustlsConnect>,
    max: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

impl Pool {
    pub(super) fn new(
        config: postgres::Config,
        tls: Option<MakeRustlsConnect>,
        max: usize,
    ) -> Self {
        Self {
            config,
            tls,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        }
    }

    /// How connections are made.
    pub(super) fn config(&self) -> (&postgres::Config, Option<&MakeRustlsConnect>) {
        (&self.config, self.tls.as_ref())
    }

    /// A connection for the caller alone, until the lease is dropped.
    pub(super) fn lease(&self) -> Result<Lease<'_>, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(connection) = state.idle.pop() {
                drop(state);
                if connection.is_open() {
                    return Ok(Lease {
                        pool: self,
                        connection: Some(connection),
                    });
                }
                state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.open -= 1;
                continue;
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match Connection::open(&self.config, self.tls.as_ref()) {
                    Ok(connection) => Ok(Lease {
                        pool: self,
                        connection: Some(connection),
                    }),
                    Err(e) => {
                        self.forget();
                        Err(e)
                    }
                };
            }
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A lent connection that will not come back.
    fn forget(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.open -= 1;
        self.returned.notify_one();
    }
}

/// A connection lent by the pool; back to it when dropped, unless spoiled.
pub(super) struct Lease<'p> {
    pool: &'p Pool,
    connection: Option<Connection>,
}

impl Lease<'_> {
    /// See [`Connection::call`].
    pub(super) fn call<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Session) -> Result<R, postgres::Error> + Send + 'static,
    ) -> Result<R, StoreError> {
        match &self.connection {
            Some(connection) => connection.call(work),
            None => Err(StoreError::Engine("the database connection closed".into())),
        }
    }

    /// Closes the connection instead of lending it again (its transaction state is unknown).
    pub(super) fn spoil(&mut self) {
        if self.connection.take().is_some() {
            self.pool.forget();
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            let mut state = self
                .pool
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.idle.push(connection);
            self.pool.returned.notify_one();
        }
    }
}
