//! One PostgreSQL connection that reconnects: a call on a broken connection fails once with a
//! retriable error and drops it; the next call connects again.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, NoTls};
use tracing::{debug, warn};

use crate::error::PgMetadataError;
use crate::url::MetadataUrl;

/// What a step inside [`Conn::run`] can fail with: the driver's error (classified and
/// scrubbed by `run`) or this crate's own answer (a conflict, a fence).
pub(crate) enum Failure {
    Pg(postgres::Error),
    Store(PgMetadataError),
    /// A column of an unexpected type or NULL: the schema is not what this binary made.
    Column(String),
}

/// Column `i` of `row`, or [`Failure::Column`] (never a panic, whatever the table holds).
pub(crate) fn col<'a, T: postgres::types::FromSql<'a>>(
    row: &'a postgres::Row,
    i: usize,
) -> Result<T, Failure> {
    row.try_get(i)
        .map_err(|e| Failure::Column(format!("column {i}: {e}")))
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<PgMetadataError> for Failure {
    fn from(e: PgMetadataError) -> Self {
        Failure::Store(e)
    }
}

/// A connection unused for this long is checked (an empty query) before a call uses it:
/// after a PostgreSQL restart or failover a rarely used connection (a CreateTopics' write)
/// still points at the old server, and the call would fail once for nothing.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);
/// How long that check may take: a server that does not answer it is treated as gone.
const IDLE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Conn {
    url: Arc<MetadataUrl>,
    client: Mutex<Option<Client>>,
    /// When the connection last answered a call.
    last_answer: Mutex<Instant>,
}

impl Drop for Conn {
    /// The blocking client closes its connection on a runtime of its own, which panics on a
    /// thread that runs an async runtime (a broker's task dropped at shutdown): a live
    /// client is dropped on a thread of its own instead.
    fn drop(&mut self) {
        let client = match self.client.get_mut() {
            Ok(c) => c.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(client) = client {
            let spawned = std::thread::Builder::new()
                .name("metadata-store-close".into())
                .spawn(move || drop(client));
            if let Err(e) = spawned {
                warn!(error = %e, "cannot start a thread to close a metadata store connection");
            }
        }
    }
}

impl Conn {
    pub(crate) fn new(url: Arc<MetadataUrl>) -> Conn {
        Conn {
            url,
            client: Mutex::new(None),
            last_answer: Mutex::new(Instant::now()),
        }
    }

    pub(crate) fn url(&self) -> &MetadataUrl {
        &self.url
    }

    fn locked(&self) -> MutexGuard<'_, Option<Client>> {
        match self.client.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Runs `f` on the connection, connecting first if there is none. A connection-class
    /// failure drops the connection and answers [`PgMetadataError::Unavailable`].
    pub(crate) fn run<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, Failure>,
    ) -> Result<T, PgMetadataError> {
        let mut guard = self.locked();
        self.run_locked(&mut guard, |c, _| f(c))
    }

    /// As [`Conn::run`], with `fresh` telling `f` whether the connection was just made (a
    /// listener must LISTEN again then).
    pub(crate) fn run_locked<T>(
        &self,
        guard: &mut MutexGuard<'_, Option<Client>>,
        f: impl FnOnce(&mut Client, bool) -> Result<T, Failure>,
    ) -> Result<T, PgMetadataError> {
        if guard.as_ref().is_some_and(|c| c.is_closed()) {
            **guard = None;
        }
        if let Some(client) = guard.as_mut() {
            if self.idle_for() >= IDLE_CHECK_AFTER && client.is_valid(IDLE_CHECK_TIMEOUT).is_err() {
                debug!(url = %self.url, "an idle metadata store connection is gone; reconnecting");
                **guard = None;
            }
        }
        let fresh = guard.is_none();
        if fresh {
            let client = self
                .url
                .config()
                .connect(NoTls)
                .map_err(|e| self.classify(&e))?;
            debug!(url = %self.url, "connected to the metadata store");
            **guard = Some(client);
        }
        let Some(client) = guard.as_mut() else {
            return Err(PgMetadataError::Closed);
        };
        let result = f(client, fresh);
        if result.is_ok() {
            *self.last_answer.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
        match result {
            Ok(v) => Ok(v),
            Err(Failure::Store(e)) => Err(e),
            Err(Failure::Column(reason)) => Err(PgMetadataError::Database {
                target: self.url.to_string(),
                reason: format!("unexpected schema: {reason}"),
            }),
            Err(Failure::Pg(e)) => {
                let err = self.classify(&e);
                if err.is_retriable() || client.is_closed() {
                    warn!(url = %self.url, error = %err, "metadata store connection dropped; the next call reconnects");
                    **guard = None;
                }
                Err(err)
            }
        }
    }

    fn idle_for(&self) -> Duration {
        self.last_answer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// The connection, unless a call holds it now.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, Option<Client>>> {
        match self.client.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub(crate) fn disconnect(&self) {
        *self.locked() = None;
    }

    /// Drops the connection unless a call holds it (a waiter notices `close` by itself).
    pub(crate) fn try_disconnect(&self) {
        if let Ok(mut g) = self.client.try_lock() {
            *g = None;
        }
    }

    pub(crate) fn classify(&self, e: &postgres::Error) -> PgMetadataError {
        classify(&self.url, e)
    }
}

/// Retriable: no server answer (I/O, a closed connection, a timeout) or a server
/// answer that means "not now" (shutting down, starting up, too many connections, a
/// read-only standby after a failover, a serialization failure or deadlock).
pub(crate) fn classify(url: &MetadataUrl, e: &postgres::Error) -> PgMetadataError {
    let target = url.to_string();
    let reason = url.scrub(&error_text(e));
    let retriable = match e.code() {
        // No server answer: retriable when the connection broke or I/O failed (refused,
        // reset, timed out, no writable host); not for a value this client could not
        // convert, which a retry does not change.
        None => e.is_closed() || has_io_source(e),
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::READ_ONLY_SQL_TRANSACTION,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::QUERY_CANCELED,
                ]
                .contains(code)
        }
    };
    if retriable {
        PgMetadataError::Unavailable { target, reason }
    } else {
        PgMetadataError::Database { target, reason }
    }
}

fn has_io_source(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The driver's message with the server's detail, when there is one.
fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}
