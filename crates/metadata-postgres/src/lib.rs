//! Strom's cluster metadata in PostgreSQL (issue 11): the metadata log that every broker
//! replays into the same `MetadataImage`, the controller lease with its epoch, broker
//! registrations with their heartbeats, and node-id allocation, all as tables in one
//! database, changed in PostgreSQL transactions.
//!
//! # Configuration
//!
//! - `cluster.metadata.url` (`--cluster-metadata`): `postgres://USER:PASS@HOST:PORT/DB`
//!   (or `postgresql://`), with libpq's query options: `?options=-csearch_path%3Dstrom`
//!   keeps the tables in a schema of their own; for a primary with standbys, list the hosts
//!   and add `target_session_attrs=read-write`, so that a reconnect after a failover finds
//!   the new primary (a read-only refusal is retriable and drops the connection). The
//!   password is never written to logs or errors: [`MetadataUrl`] shows it as `***`, and
//!   server and driver messages are scrubbed of it.
//! - `broker.session.timeout.ms` (9000) and `broker.heartbeat.interval.ms` (2000), Kafka's
//!   names and defaults: a broker is live while its last heartbeat is within the former.
//!
//! # Tables (migration 1, see [`schema`])
//!
//! | table | what |
//! | --- | --- |
//! | `schema_version` | one row per applied migration |
//! | `metadata_log` | `offset` bigint primary key (dense from 0), `record` json (the record as [`MetadataRecord`] serialises), `timestamp_ms`, `controller_epoch` |
//! | `controller_lease` | one row: `holder_node_id`, `epoch`, `expires_at` |
//! | `broker_registrations` | `node_id`, `incarnation_id`, `endpoints`, `rack`, `registered_at`, `last_heartbeat_at`, `fenced` |
//! | `node_id_allocation` | one row: the next id to hand out (from 1001) |
//! | `cluster_identity` | (migration 2) one row: the cluster id the first broker picked |
//!
//! # Use
//!
//! [`PgMetadataStore::connect`] migrates the schema and hands out handles, each with
//! connections of its own: [`PgMetadataStore::log`] (the [`MetadataLogClient`] a loader
//! follows), [`PgMetadataLog::for_controller`] (the same log with each append fenced by a
//! [`ControllerLease`] in the append's own transaction), [`PgMetadataStore::leases`]
//! (acquire, renew, release, current), [`LeaseKeeper`] (a node's bid for the lease, kept on a
//! thread), and [`PgMetadataStore::brokers`] (register, heartbeat, live, fence). A
//! registration reaches the image as the `RegisterBroker` record that the controller appends
//! ([`BrokerRegistration::record`]); the table is only the liveness.
//!
//! Errors: [`PgMetadataError::Unavailable`] (a lost connection, a server restart or
//! failover) is retriable and the next call reconnects; through the seam it is
//! `MetadataLogError::Unavailable`, and a fenced append is `MetadataLogError::Fenced`, which
//! the controller answers NOT_CONTROLLER.
//!
//! Tests: `testing::TestPostgres` (feature `testing`) runs Debian's PostgreSQL on a free
//! loopback port in a temporary directory.
//!
//! All times are PostgreSQL's clock, so brokers' clock skew does not move a lease or a
//! session. The blocking `postgres` client is used (it fits the blocking
//! [`MetadataLogClient`] seam, whose callers are on the blocking pool already): each
//! connection has its own small runtime and no pool is needed, since appends are
//! serialised by the controller and followers wait on a connection of their own. Calling
//! any of this from an async runtime thread panics: use `spawn_blocking`.
//!
//! [`MetadataRecord`]: strom_metadata::records::MetadataRecord

mod brokers;
mod conn;
mod error;
mod keeper;
mod lease;
mod log;
pub mod schema;
mod url;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use brokers::{
    BrokerRegistration, BrokerRegistry, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_SESSION_TIMEOUT_MS,
};
pub use error::PgMetadataError;
pub use keeper::LeaseKeeper;
pub use lease::{ControllerLease, ControllerLeases, MAX_LEASE_TTL_MS};
pub use log::{PgMetadataLog, NOTIFY_CHANNEL};
pub use url::MetadataUrl;

use conn::Conn;
use strom_metadata::log_client::MetadataLogClient;

/// The cluster's PostgreSQL: where the metadata handles come from. Each handle it makes
/// has connections of its own (made on first use, remade after a failure).
#[derive(Clone, Debug)]
pub struct PgMetadataStore {
    url: Arc<MetadataUrl>,
}

impl PgMetadataStore {
    /// Parses `url` (`cluster.metadata.url`), connects, and creates or upgrades the schema.
    pub fn connect(url: &str) -> Result<PgMetadataStore, PgMetadataError> {
        let store = PgMetadataStore {
            url: Arc::new(MetadataUrl::parse(url)?),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn url(&self) -> &MetadataUrl {
        &self.url
    }

    /// Creates or upgrades the schema; returns the version found before.
    pub fn migrate(&self) -> Result<i32, PgMetadataError> {
        schema::migrate(&self.conn())
    }

    fn conn(&self) -> Conn {
        Conn::new(self.url.clone())
    }

    /// The metadata log, unfenced: for the loader that follows it, and for a writer that is
    /// the only one (a controller uses [`PgMetadataLog::for_controller`]).
    pub fn log(&self) -> PgMetadataLog {
        PgMetadataLog::new(self.conn(), self.conn())
    }

    /// The cluster's id: the one already recorded, else `candidate`, recorded now (the
    /// first broker of a cluster picks it; every later one reports the same).
    pub fn cluster_id(&self, candidate: &str) -> Result<String, PgMetadataError> {
        self.conn().run(|c| {
            c.execute(
                "INSERT INTO cluster_identity (id, cluster_id) VALUES (1, $1)
                 ON CONFLICT (id) DO NOTHING",
                &[&candidate],
            )?;
            let row = c.query_one("SELECT cluster_id FROM cluster_identity WHERE id = 1", &[])?;
            conn::col(&row, 0)
        })
    }

    pub fn leases(&self) -> ControllerLeases {
        ControllerLeases::new(self.conn())
    }

    pub fn brokers(&self, session_timeout_ms: i64) -> BrokerRegistry {
        BrokerRegistry::new(self.conn(), session_timeout_ms)
    }
}

/// The log as the seam's trait object, for the controller and loader.
pub fn as_log_client(log: PgMetadataLog) -> Arc<dyn MetadataLogClient> {
    Arc::new(log)
}
