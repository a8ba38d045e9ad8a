//! The shared-storage tables, created and upgraded by versioned migrations of their own
//! (`shared_storage_schema_version`), apart from the metadata log's, so either can move
//! without the other. Concurrent brokers take turns under a transaction-scoped advisory lock.

use tokio_postgres::Client;
use tracing::info;

use crate::error::SharedStorageError;

/// The advisory lock key that serialises these migrations ("STROMSSS" as a big-endian i64).
const MIGRATION_LOCK_KEY: i64 = 0x5354_524f_4d53_5353;

/// (version, what it does, SQL). Append only: a released migration never changes.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "shared-storage partitions, batch index, producer state, orphaned objects",
        r#"
CREATE TABLE shared_storage_partitions (
    topic_id         uuid    NOT NULL,
    partition        integer NOT NULL CHECK (partition >= 0),
    -- The offset the next committed batch gets: the high watermark.
    next_offset      bigint  NOT NULL CHECK (next_offset >= 0),
    log_start_offset bigint  NOT NULL CHECK (log_start_offset >= 0),
    -- The newest leader epoch any broker has claimed: a commit under an older one is fenced.
    leader_epoch     integer NOT NULL,
    PRIMARY KEY (topic_id, partition)
);
CREATE TABLE shared_storage_batches (
    topic_id         uuid     NOT NULL,
    partition        integer  NOT NULL,
    base_offset      bigint   NOT NULL,
    last_offset      bigint   NOT NULL CHECK (last_offset >= base_offset),
    object_key       text     NOT NULL,
    byte_start       bigint   NOT NULL CHECK (byte_start >= 0),
    byte_length      integer  NOT NULL CHECK (byte_length > 0),
    max_timestamp_ms bigint   NOT NULL,
    leader_epoch     integer  NOT NULL,
    producer_id      bigint   NOT NULL,
    producer_epoch   smallint NOT NULL,
    base_sequence    integer  NOT NULL,
    last_sequence    integer  NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
);
-- An idempotent producer's retry is found by its sequence.
CREATE INDEX shared_storage_batches_by_sequence
    ON shared_storage_batches (topic_id, partition, producer_id, producer_epoch, base_sequence)
    WHERE producer_id >= 0;
-- What points into an object: the collector's and the orphan record's check.
CREATE INDEX shared_storage_batches_by_object ON shared_storage_batches (object_key);
CREATE TABLE shared_storage_producers (
    topic_id       uuid     NOT NULL,
    partition      integer  NOT NULL,
    producer_id    bigint   NOT NULL,
    producer_epoch smallint NOT NULL,
    last_sequence  integer  NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
);
-- Objects PUT whose commit failed: no batch index row points into them, so the collector
-- (the upkeep issue) may delete them.
CREATE TABLE shared_storage_orphan_objects (
    object_key  text PRIMARY KEY,
    size_bytes  bigint NOT NULL,
    reason      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
"#,
    ),
    (
        2,
        "transactions: batch kinds, marker fencing, open and aborted transactions",
        r#"
-- 0: a plain or idempotent batch; 1: a transactional data batch; 2: a COMMIT marker;
-- 3: an ABORT marker. Every broker replays these in offset order for its last stable offset
-- and aborted transactions, so all brokers agree on them at every high watermark.
ALTER TABLE shared_storage_batches
    ADD COLUMN txn_kind smallint NOT NULL DEFAULT 0 CHECK (txn_kind BETWEEN 0 AND 3);
-- The newest coordinator epoch whose marker was written for the producer here: an older
-- coordinator's marker is fenced (TRANSACTION_COORDINATOR_FENCED), as Kafka's producer state.
ALTER TABLE shared_storage_producers
    ADD COLUMN coordinator_epoch integer NOT NULL DEFAULT -1;
-- Each producer's open transaction per partition (its first offset: where the last stable
-- offset stops), from its first transactional batch to its marker.
CREATE TABLE shared_storage_ongoing_txns (
    topic_id       uuid     NOT NULL,
    partition      integer  NOT NULL,
    producer_id    bigint   NOT NULL,
    producer_epoch smallint NOT NULL,
    first_offset   bigint   NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
);
-- Kafka's .txnindex: every aborted transaction, from its first offset to its ABORT marker.
CREATE TABLE shared_storage_aborted_txns (
    topic_id     uuid    NOT NULL,
    partition    integer NOT NULL,
    producer_id  bigint  NOT NULL,
    first_offset bigint  NOT NULL,
    last_offset  bigint  NOT NULL CHECK (last_offset >= first_offset),
    PRIMARY KEY (topic_id, partition, last_offset)
);
"#,
    ),
];

pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Brings the tables up to [`latest_version`] in one transaction; returns the version found.
pub async fn migrate(client: &mut Client) -> Result<i32, SharedStorageError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS shared_storage_schema_version (
             version     integer PRIMARY KEY,
             description text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM shared_storage_schema_version",
            &[],
        )
        .await?;
    let found: i32 = row.try_get(0)?;
    if found > latest_version() {
        return Err(SharedStorageError::Config(format!(
            "shared-storage schema version {found} is newer than this binary's {}",
            latest_version()
        )));
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO shared_storage_schema_version (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await?;
    }
    tx.commit().await?;
    if found < latest_version() {
        info!(
            from = found,
            to = latest_version(),
            "shared-storage schema migrated"
        );
    }
    Ok(found)
}
