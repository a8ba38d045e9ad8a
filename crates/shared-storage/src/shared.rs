//! What the partitions and the broker-wide tasks share: the configuration, the object store,
//! the reader connection to PostgreSQL, the intake's queue and the range cache. It knows no
//! partition (the registry of open partitions is the broker-wide part's, `storage`), so
//! `partition` and `storage` both build on it without importing each other.

use bytes::Bytes;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use tokio_postgres::{Client, Config, NoTls};
use tracing::debug;
use uuid::Uuid;

use crate::cache::RangeCache;
use crate::config::ObjectStoreConfig;
use crate::error::SharedStorageError;
use crate::sequencer::{Committed, IndexEntry, StagedBatch};
use crate::store::Store;

pub(crate) struct IntakeRequest {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub records: Bytes,
    pub batches: Vec<StagedBatch>,
    /// The topic's `message.timestamp.type` is LogAppendTime: the intake stamps the batches
    /// with its clock when it seals the object.
    pub log_append_time: bool,
    /// A coordinator's batch (see [`crate::sequencer::StagedAppend::coordinator`]).
    pub coordinator: bool,
    pub reply: oneshot::Sender<Result<Committed, SharedStorageError>>,
}

pub(crate) struct Inner {
    pub config: ObjectStoreConfig,
    pub store: Store,
    pub node_id: i32,
    pub pg_url: String,
    /// Index reads and partition opening; reconnected after a failure.
    pub reader: tokio::sync::Mutex<Option<Client>>,
    pub intake: mpsc::Sender<IntakeRequest>,
    pub cache: RangeCache,
    /// Range GETs sent, for the figures (each is a billable request).
    pub get_requests: std::sync::atomic::AtomicU64,
    /// Commits tried so far, and the one (by number from 1; 0: none) a test makes fail
    /// before it reaches PostgreSQL.
    pub commits_tried: std::sync::atomic::AtomicU64,
    pub fail_commit_number: std::sync::atomic::AtomicU64,
}

/// A connect attempt's limit per host when the URL gives none (libpq's `connect_timeout`):
/// with one host as the metadata store's; with several (a failover URL) short, so that a host
/// that drops packets (a crashed machine) costs little before the next one is tried.
const CONNECT_TIMEOUT_ONE_HOST: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT_PER_HOST: Duration = Duration::from_secs(2);
/// The TCP connect timeout covers the socket only: the startup exchange (authentication, and
/// `target_session_attrs` asking the server whether it takes writes) gets this much more.
const CONNECT_STARTUP_SLACK: Duration = Duration::from_secs(5);
/// A server that stops answering (a cut network) is noticed within about this long.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// `url` parsed, with the connect timeout (unless the URL sets one) and keepalives this crate
/// relies on, and how long connecting may take in all: every host tried in turn.
pub(crate) fn pg_config(url: &str) -> Result<(Config, Duration), SharedStorageError> {
    let mut config = Config::from_str(url)?;
    let hosts = u32::try_from(config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(if hosts > 1 {
            CONNECT_TIMEOUT_PER_HOST
        } else {
            CONNECT_TIMEOUT_ONE_HOST
        });
    }
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    let per_host = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT_ONE_HOST)
        + CONNECT_STARTUP_SLACK;
    Ok((config, per_host.saturating_mul(hosts)))
}

/// Connects to the first host of `url` that answers (and takes writes, with
/// `target_session_attrs=read-write`), within the budget of [`pg_config`].
pub(crate) async fn connect(url: &str) -> Result<Client, SharedStorageError> {
    let (config, budget) = pg_config(url)?;
    let (client, connection) = tokio::time::timeout(budget, config.connect(NoTls))
        .await
        .map_err(|_| {
            SharedStorageError::Sequencer(format!(
                "connecting to PostgreSQL: no answer in {} ms",
                budget.as_millis()
            ))
        })??;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "shared-storage PostgreSQL connection ended");
        }
    });
    Ok(client)
}

type ReaderFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, SharedStorageError>> + Send + 'a>>;

impl Inner {
    /// Runs `f` on the reader connection, connecting first if it is gone; a failure drops the
    /// connection so the next call reconnects.
    pub(crate) async fn with_reader<T>(
        &self,
        f: impl for<'c> FnOnce(&'c Client) -> ReaderFuture<'c, T>,
    ) -> Result<T, SharedStorageError> {
        let timeout = self.config.request_timeout();
        let mut guard = self.reader.lock().await;
        let timed_out =
            || SharedStorageError::Sequencer(format!("no answer in {} ms", timeout.as_millis()));
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            // Bounded by the connect's own budget, not `timeout`: with a failover URL the
            // first hosts may each take their connect timeout before one answers.
            *guard = Some(connect(&self.pg_url).await?);
        }
        let Some(client) = guard.as_ref() else {
            return Err(SharedStorageError::Sequencer("no connection".into()));
        };
        // A server that stopped answering (not closed) must not hold this lock forever.
        let result = match tokio::time::timeout(timeout, f(client)).await {
            Ok(r) => r,
            Err(_) => {
                *guard = None;
                return Err(timed_out());
            }
        };
        if result.is_err() && client.is_closed() {
            *guard = None;
        }
        result
    }

    pub(crate) async fn read_index(
        &self,
        topic_id: Uuid,
        partition: i32,
        from_offset: i64,
    ) -> Result<(Vec<IndexEntry>, i64), SharedStorageError> {
        self.with_reader(|c| {
            Box::pin(async move {
                let start: i64 = c
                    .query_one(
                        "SELECT log_start_offset FROM shared_storage_partitions
                          WHERE topic_id = $1 AND partition = $2",
                        &[&topic_id, &partition],
                    )
                    .await?
                    .try_get(0)?;
                let rows = c
                    .query(
                        "SELECT base_offset, last_offset, object_key, byte_start, byte_length,
                                max_timestamp_ms, leader_epoch, producer_id, txn_kind
                           FROM shared_storage_batches
                          WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3
                          ORDER BY base_offset",
                        &[&topic_id, &partition, &from_offset.max(start)],
                    )
                    .await?;
                let mut entries = Vec::with_capacity(rows.len());
                for r in rows {
                    let byte_start: i64 = r.try_get(3)?;
                    let byte_length: i32 = r.try_get(4)?;
                    entries.push(IndexEntry {
                        base_offset: r.try_get(0)?,
                        last_offset: r.try_get(1)?,
                        object_key: r.try_get(2)?,
                        byte_start: u64::try_from(byte_start).map_err(|_| {
                            SharedStorageError::Corrupt("negative byte_start".into())
                        })?,
                        byte_length: u32::try_from(byte_length).map_err(|_| {
                            SharedStorageError::Corrupt("negative byte_length".into())
                        })?,
                        max_timestamp_ms: r.try_get(5)?,
                        leader_epoch: r.try_get(6)?,
                        producer_id: r.try_get(7)?,
                        txn_kind: r.try_get(8)?,
                    });
                }
                Ok((entries, start))
            })
        })
        .await
    }

    pub(crate) async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    ) -> Result<i64, SharedStorageError> {
        self.with_reader(|c| {
            Box::pin(async move {
                let row = c
                    .query_one(
                        "UPDATE shared_storage_partitions
                            SET log_start_offset = GREATEST(log_start_offset, LEAST($3, next_offset))
                          WHERE topic_id = $1 AND partition = $2
                          RETURNING log_start_offset",
                        &[&topic_id, &partition, &offset],
                    )
                    .await?;
                Ok(row.try_get(0)?)
            })
        })
        .await
    }

    /// The stored bytes of `entries`, in order: cached ranges from the cache, and each run
    /// of uncached batches lying back to back in one object with one range GET (a fetch from
    /// a broker that did not write them reads whole runs of an intake object).
    pub(crate) async fn batches_bytes(
        &self,
        entries: &[IndexEntry],
    ) -> Result<Vec<Bytes>, SharedStorageError> {
        let mut out: Vec<Option<Bytes>> = entries
            .iter()
            .map(|e| self.cache.get(&e.object_key, e.byte_start, e.byte_length))
            .collect();
        // Runs [i, j) of uncached batches lying back to back in one object.
        let mut runs = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            if out[i].is_some() {
                i += 1;
                continue;
            }
            let first = &entries[i];
            let mut end = first.byte_start + u64::from(first.byte_length);
            let mut j = i + 1;
            while j < entries.len()
                && out[j].is_none()
                && entries[j].object_key == first.object_key
                && entries[j].byte_start == end
            {
                end += u64::from(entries[j].byte_length);
                j += 1;
            }
            runs.push((i, j, first.byte_start..end));
            i = j;
        }
        // A read's runs are fetched at once: they are bounded by the fetch's max bytes, and
        // one after another would cost a round trip each.
        self.get_requests
            .fetch_add(runs.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let fetched = futures_util::future::join_all(
            runs.iter()
                .map(|(i, _, range)| self.store.get_range(&entries[*i].object_key, range.clone())),
        )
        .await;
        for ((i, j, range), run) in runs.into_iter().zip(fetched) {
            let run = run?;
            for k in i..j {
                let e = &entries[k];
                let from = (e.byte_start - range.start) as usize;
                let bytes = run.slice(from..from + e.byte_length as usize);
                self.cache
                    .insert(&e.object_key, e.byte_start, bytes.clone());
                out[k] = Some(bytes);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod pg_config_tests {
    use super::*;

    #[test]
    fn a_failover_url_gets_a_short_connect_timeout_per_host_and_a_budget_for_all() {
        let (c, budget) = pg_config(
            "postgres://strom:pw@127.0.0.1:5432,127.0.0.1:5433/db?target_session_attrs=read-write",
        )
        .expect("valid");
        assert_eq!(c.get_hosts().len(), 2);
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT_PER_HOST));
        assert_eq!(
            c.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(
            budget,
            (CONNECT_TIMEOUT_PER_HOST + CONNECT_STARTUP_SLACK) * 2
        );
        assert!(c.get_keepalives());

        let (one, _) = pg_config("postgres://strom@db/x").expect("valid");
        assert_eq!(one.get_connect_timeout(), Some(&CONNECT_TIMEOUT_ONE_HOST));
        let (given, budget) =
            pg_config("postgres://strom@a,b,c/x?connect_timeout=1").expect("valid");
        assert_eq!(given.get_connect_timeout(), Some(&Duration::from_secs(1)));
        assert_eq!(budget, (Duration::from_secs(1) + CONNECT_STARTUP_SLACK) * 3);
        assert!(pg_config("postgres://strom@db:notaport/x").is_err());
    }
}
