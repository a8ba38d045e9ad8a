//! The sequencer: one PostgreSQL transaction per intake object checks each partition's leader
//! epoch, assigns offsets, checks idempotent producers' sequences and records where each
//! batch lies. Nothing is acknowledged before that transaction commits.

use proto_kafka::ResponseError;
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use crate::error::SharedStorageError;

/// The NOTIFY channel a commit signals: payload `topic_id:partition:next_offset`.
pub const NOTIFY_CHANNEL: &str = "strom_shared_storage";

/// One batch of a partition's append, as it lies in the object.
#[derive(Debug, Clone)]
pub struct StagedBatch {
    pub byte_start: u64,
    pub byte_length: u32,
    pub offset_count: i64,
    pub max_timestamp_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
    /// What the batch is to transactions: one of [`txn_kind`]'s values.
    pub txn_kind: i16,
    /// A marker's coordinator epoch (-1 for other batches).
    pub coordinator_epoch: i32,
}

/// A batch's part in a transaction, as the index keeps it (`shared_storage_batches.txn_kind`).
pub mod txn_kind {
    /// A plain or idempotent batch.
    pub const NONE: i16 = 0;
    /// A transactional data batch: it opens the producer's transaction if none is open.
    pub const DATA: i16 = 1;
    /// A COMMIT marker: the producer's open transaction ends.
    pub const COMMIT: i16 = 2;
    /// An ABORT marker: the producer's open transaction ends and its records are dropped by
    /// read_committed readers.
    pub const ABORT: i16 = 3;

    pub fn is_marker(kind: i16) -> bool {
        kind == COMMIT || kind == ABORT
    }
}

/// One produce request's batches for one partition.
#[derive(Debug, Clone)]
pub struct StagedAppend {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub batches: Vec<StagedBatch>,
    /// The time the batches were stamped with (LogAppendTime), None when they keep the
    /// producer's.
    pub log_append_time_ms: Option<i64>,
    /// Written by a coordinator for a producer (TxnOffsetCommit's batch, a transaction
    /// marker), Kafka's AppendOrigin.Coordinator: the producer's epoch is checked, not its
    /// sequences, so a coordinator's batch is never taken for the producer's duplicate.
    pub coordinator: bool,
}

/// Where a committed batch lies (the index row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub base_offset: i64,
    pub last_offset: i64,
    pub object_key: String,
    pub byte_start: u64,
    pub byte_length: u32,
    pub max_timestamp_ms: i64,
    pub leader_epoch: i32,
    pub producer_id: i64,
    /// [`txn_kind`]'s value.
    pub txn_kind: i16,
}

/// What one append got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub first_offset: i64,
    pub last_offset: i64,
    /// Every batch was a retry of one already committed.
    pub duplicate: bool,
    /// The index rows this commit wrote (none for a duplicate).
    pub entries: Vec<IndexEntry>,
    pub high_watermark: i64,
    /// The broker time stamped into the batches (the produce answer's log_append_time_ms):
    /// -1 unless the topic uses LogAppendTime. A retry of committed batches gets the first
    /// one's stored time, as Kafka answers a duplicate with its batch's.
    pub log_append_time_ms: i64,
}

/// The last sequence of a batch of `records_count` records from `base_sequence` (sequences
/// wrap from i32::MAX to 0, as Kafka's do).
fn last_sequence(base_sequence: i32, records_count: i32) -> i32 {
    let last = i64::from(base_sequence) + i64::from(records_count.max(1)) - 1;
    (last % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// Commits `appends` (all lying in `object_key`) in one transaction. The outer error means
/// nothing committed (or the outcome is unknown: the connection went during COMMIT); an inner
/// error refuses that append alone while the others commit.
pub async fn commit(
    client: &mut Client,
    object_key: &str,
    appends: &[StagedAppend],
) -> Result<Vec<Result<Committed, SharedStorageError>>, SharedStorageError> {
    let mut results = commit_objects(client, &[(object_key, appends)]).await?;
    Ok(results.pop().unwrap_or_default())
}

/// Commits the appends of several objects in one transaction (one WAL flush for all: the
/// intake's group commit when objects wait for the sequencer), each object's appends after
/// the previous object's, so a partition's appends keep their order. Results by object, then
/// append; errors as [`commit`]'s.
pub async fn commit_objects(
    client: &mut Client,
    objects: &[(&str, &[StagedAppend])],
) -> Result<Vec<Vec<Result<Committed, SharedStorageError>>>, SharedStorageError> {
    let flat: Vec<(usize, &str, &StagedAppend)> = objects
        .iter()
        .enumerate()
        .flat_map(|(o, (key, appends))| appends.iter().map(move |a| (o, *key, a)))
        .collect();
    let mut tx = client.transaction().await?;
    if let [(_, key, only)] = flat[..] {
        // One append needs no savepoint (two round trips fewer): a refusal rolls back all.
        let result = match commit_one(&tx, key, only).await? {
            Ok(done) => {
                if !done.duplicate {
                    notify(&tx, only, done.high_watermark).await?;
                }
                tx.commit().await?;
                Ok(done)
            }
            Err(refused) => {
                tx.rollback().await?;
                Err(SharedStorageError::Rejected(refused))
            }
        };
        return Ok(objects
            .iter()
            .map(|(_, appends)| {
                if appends.is_empty() {
                    Vec::new()
                } else {
                    vec![match &result {
                        Ok(done) => Ok(done.clone()),
                        Err(SharedStorageError::Rejected(e)) => {
                            Err(SharedStorageError::Rejected(*e))
                        }
                        Err(_) => Err(SharedStorageError::IntakeStopped),
                    }]
                }
            })
            .collect());
    }
    // Rows are locked in one order so two brokers' commits never deadlock; the sort is
    // stable, so one partition's appends keep their object and request order.
    let mut order: Vec<usize> = (0..flat.len()).collect();
    order.sort_by_key(|&i| (flat[i].2.topic_id, flat[i].2.partition));
    let mut results: Vec<Option<Result<Committed, SharedStorageError>>> =
        (0..flat.len()).map(|_| None).collect();
    for i in order {
        let (_, key, append) = flat[i];
        // A savepoint per append: one refused append leaves the others' rows in place.
        let sp = tx.savepoint("append").await?;
        match commit_one(&sp, key, append).await {
            Ok(Ok(done)) => {
                sp.commit().await?;
                results[i] = Some(Ok(done));
            }
            Ok(Err(refused)) => {
                sp.rollback().await?;
                results[i] = Some(Err(SharedStorageError::Rejected(refused)));
            }
            Err(e) => return Err(e),
        }
    }
    // One notification per partition, with its new high watermark.
    let mut by_partition: std::collections::BTreeMap<(Uuid, i32), i64> = Default::default();
    for ((_, _, append), r) in flat.iter().zip(&results) {
        if let Some(Ok(done)) = r {
            if !done.duplicate {
                let hw = by_partition
                    .entry((append.topic_id, append.partition))
                    .or_default();
                *hw = (*hw).max(done.high_watermark);
            }
        }
    }
    for ((topic_id, partition), hw) in by_partition {
        let payload = format!("{topic_id}:{partition}:{hw}");
        tx.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &payload])
            .await?;
    }
    tx.commit().await?;
    let mut out: Vec<Vec<Result<Committed, SharedStorageError>>> =
        objects.iter().map(|_| Vec::new()).collect();
    for ((o, _, _), r) in flat.iter().zip(results) {
        out[*o].push(r.unwrap_or(Err(SharedStorageError::IntakeStopped)));
    }
    Ok(out)
}

async fn notify(
    tx: &Transaction<'_>,
    append: &StagedAppend,
    high_watermark: i64,
) -> Result<(), SharedStorageError> {
    let payload = format!("{}:{}:{high_watermark}", append.topic_id, append.partition);
    tx.execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &payload])
        .await?;
    Ok(())
}

/// Ok(Err(_)) refuses this append; Err(_) fails the whole transaction.
async fn commit_one(
    tx: &Transaction<'_>,
    object_key: &str,
    append: &StagedAppend,
) -> Result<Result<Committed, ResponseError>, SharedStorageError> {
    let row = tx
        .query_opt(
            "SELECT next_offset, leader_epoch FROM shared_storage_partitions
              WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
            &[&append.topic_id, &append.partition],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Err(ResponseError::UnknownTopicOrPartition));
    };
    let mut next_offset: i64 = row.try_get(0)?;
    let stored_epoch: i32 = row.try_get(1)?;
    if stored_epoch > append.leader_epoch {
        // Another broker has claimed a newer epoch: this one is no longer the leader.
        return Ok(Err(ResponseError::NotLeaderOrFollower));
    }
    if stored_epoch < append.leader_epoch {
        tx.execute(
            "UPDATE shared_storage_partitions SET leader_epoch = $3
              WHERE topic_id = $1 AND partition = $2",
            &[&append.topic_id, &append.partition, &append.leader_epoch],
        )
        .await?;
    }
    let mut first: Option<(i64, i64)> = None;
    let mut last_offset = -1;
    let mut all_duplicates = true;
    let mut first_duplicate_time_ms: Option<i64> = None;
    let mut entries = Vec::with_capacity(append.batches.len());
    for b in &append.batches {
        if append.coordinator {
            // No sequence rules and no duplicates: only the producer's epoch (and a marker's
            // coordinator epoch) is checked, then the batch takes the next offset.
            if let Err(refused) = check_coordinator_batch(tx, append, b).await? {
                return Ok(Err(refused));
            }
        }
        let idempotent = b.producer_id >= 0 && !append.coordinator;
        let last_seq = last_sequence(b.base_sequence, b.records_count);
        if idempotent {
            if let Some(dup) = tx
                .query_opt(
                    "SELECT base_offset, last_offset, max_timestamp_ms FROM shared_storage_batches
                      WHERE topic_id = $1 AND partition = $2 AND producer_id = $3
                        AND producer_epoch = $4 AND base_sequence = $5 AND last_sequence = $6
                        AND producer_id >= 0 AND txn_kind < 2",
                    &[
                        &append.topic_id,
                        &append.partition,
                        &b.producer_id,
                        &b.producer_epoch,
                        &b.base_sequence,
                        &last_seq,
                    ],
                )
                .await?
            {
                let (base, last): (i64, i64) = (dup.try_get(0)?, dup.try_get(1)?);
                if first.is_none() && append.log_append_time_ms.is_some() {
                    first_duplicate_time_ms = Some(dup.try_get(2)?);
                }
                first.get_or_insert((base, last));
                last_offset = last_offset.max(last);
                continue;
            }
            let state = tx
                .query_opt(
                    "SELECT producer_epoch, last_sequence FROM shared_storage_producers
                      WHERE topic_id = $1 AND partition = $2 AND producer_id = $3 FOR UPDATE",
                    &[&append.topic_id, &append.partition, &b.producer_id],
                )
                .await?;
            if let Some(state) = state {
                let (epoch, stored_last): (i16, i32) = (state.try_get(0)?, state.try_get(1)?);
                if b.producer_epoch < epoch {
                    return Ok(Err(ResponseError::InvalidProducerEpoch));
                }
                let expected = if b.producer_epoch == epoch {
                    next_sequence(stored_last)
                } else {
                    0
                };
                if b.base_sequence != expected {
                    return Ok(Err(ResponseError::OutOfOrderSequenceNumber));
                }
            }
            tx.execute(
                "INSERT INTO shared_storage_producers
                     (topic_id, partition, producer_id, producer_epoch, last_sequence)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (topic_id, partition, producer_id) DO UPDATE
                     SET producer_epoch = EXCLUDED.producer_epoch,
                         last_sequence = EXCLUDED.last_sequence",
                &[
                    &append.topic_id,
                    &append.partition,
                    &b.producer_id,
                    &b.producer_epoch,
                    &last_seq,
                ],
            )
            .await?;
        }
        all_duplicates = false;
        let base = next_offset;
        let last = base + b.offset_count.max(1) - 1;
        let byte_start = i64::try_from(b.byte_start)
            .map_err(|_| SharedStorageError::Corrupt("object offset beyond i64".into()))?;
        let byte_length = i32::try_from(b.byte_length)
            .map_err(|_| SharedStorageError::Corrupt("batch beyond i32 bytes".into()))?;
        // A coordinator's batch keeps no sequence: the producer's own retries never match it.
        let (base_seq_row, last_seq_row) = if append.coordinator {
            (-1, -1)
        } else {
            (b.base_sequence, last_seq)
        };
        tx.execute(
            "INSERT INTO shared_storage_batches
                 (topic_id, partition, base_offset, last_offset, object_key, byte_start,
                  byte_length, max_timestamp_ms, leader_epoch, producer_id, producer_epoch,
                  base_sequence, last_sequence, txn_kind)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[
                &append.topic_id,
                &append.partition,
                &base,
                &last,
                &object_key,
                &byte_start,
                &byte_length,
                &b.max_timestamp_ms,
                &append.leader_epoch,
                &b.producer_id,
                &b.producer_epoch,
                &base_seq_row,
                &last_seq_row,
                &b.txn_kind,
            ],
        )
        .await?;
        record_transaction(tx, append, b, base, last).await?;
        entries.push(IndexEntry {
            base_offset: base,
            last_offset: last,
            object_key: object_key.to_string(),
            byte_start: b.byte_start,
            byte_length: b.byte_length,
            max_timestamp_ms: b.max_timestamp_ms,
            leader_epoch: append.leader_epoch,
            producer_id: b.producer_id,
            txn_kind: b.txn_kind,
        });
        first.get_or_insert((base, last));
        last_offset = last_offset.max(last);
        next_offset = last + 1;
    }
    if !entries.is_empty() {
        tx.execute(
            "UPDATE shared_storage_partitions SET next_offset = $3
              WHERE topic_id = $1 AND partition = $2",
            &[&append.topic_id, &append.partition, &next_offset],
        )
        .await?;
    }
    let Some((first_offset, _)) = first else {
        return Ok(Err(ResponseError::CorruptMessage));
    };
    Ok(Ok(Committed {
        first_offset,
        last_offset,
        duplicate: all_duplicates,
        entries,
        high_watermark: next_offset,
        log_append_time_ms: match (first_duplicate_time_ms, append.log_append_time_ms) {
            (Some(t), _) => t,
            (None, Some(t)) => t,
            (None, None) => -1,
        },
    }))
}

/// A coordinator's batch against the producer's state here: an older producer epoch is
/// INVALID_PRODUCER_EPOCH, a marker of an older coordinator epoch
/// TRANSACTION_COORDINATOR_FENCED (Kafka's checks for AppendOrigin.Coordinator). A marker
/// then becomes the producer's state: its epoch (sequences start again under a newer one) and
/// coordinator epoch.
async fn check_coordinator_batch(
    tx: &Transaction<'_>,
    append: &StagedAppend,
    b: &StagedBatch,
) -> Result<Result<(), ResponseError>, SharedStorageError> {
    if b.producer_id < 0 {
        return Ok(if txn_kind::is_marker(b.txn_kind) {
            Err(ResponseError::InvalidRecord)
        } else {
            Ok(())
        });
    }
    let state = tx
        .query_opt(
            "SELECT producer_epoch, coordinator_epoch FROM shared_storage_producers
              WHERE topic_id = $1 AND partition = $2 AND producer_id = $3 FOR UPDATE",
            &[&append.topic_id, &append.partition, &b.producer_id],
        )
        .await?;
    if let Some(state) = &state {
        let (epoch, coordinator_epoch): (i16, i32) = (state.try_get(0)?, state.try_get(1)?);
        if b.producer_epoch < epoch {
            return Ok(Err(ResponseError::InvalidProducerEpoch));
        }
        if txn_kind::is_marker(b.txn_kind) && b.coordinator_epoch < coordinator_epoch {
            return Ok(Err(ResponseError::TransactionCoordinatorFenced));
        }
    }
    if txn_kind::is_marker(b.txn_kind) {
        tx.execute(
            "INSERT INTO shared_storage_producers
                 (topic_id, partition, producer_id, producer_epoch, last_sequence,
                  coordinator_epoch)
             VALUES ($1, $2, $3, $4, -1, $5)
             ON CONFLICT (topic_id, partition, producer_id) DO UPDATE
                 SET last_sequence = CASE
                         WHEN shared_storage_producers.producer_epoch = EXCLUDED.producer_epoch
                         THEN shared_storage_producers.last_sequence ELSE -1 END,
                     producer_epoch = EXCLUDED.producer_epoch,
                     coordinator_epoch = EXCLUDED.coordinator_epoch",
            &[
                &append.topic_id,
                &append.partition,
                &b.producer_id,
                &b.producer_epoch,
                &b.coordinator_epoch,
            ],
        )
        .await?;
    }
    Ok(Ok(()))
}

/// Keeps the partition's open transactions and aborted index current with a committed batch
/// at `base..=last`: a transactional data batch opens its producer's transaction (if none is
/// open), a marker closes it, an ABORT adding (producer, first offset, marker offset).
async fn record_transaction(
    tx: &Transaction<'_>,
    append: &StagedAppend,
    b: &StagedBatch,
    base: i64,
    last: i64,
) -> Result<(), SharedStorageError> {
    match b.txn_kind {
        txn_kind::DATA => {
            tx.execute(
                "INSERT INTO shared_storage_ongoing_txns
                     (topic_id, partition, producer_id, producer_epoch, first_offset)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (topic_id, partition, producer_id) DO NOTHING",
                &[
                    &append.topic_id,
                    &append.partition,
                    &b.producer_id,
                    &b.producer_epoch,
                    &base,
                ],
            )
            .await?;
        }
        txn_kind::COMMIT | txn_kind::ABORT => {
            let open = tx
                .query_opt(
                    "DELETE FROM shared_storage_ongoing_txns
                      WHERE topic_id = $1 AND partition = $2 AND producer_id = $3
                      RETURNING first_offset",
                    &[&append.topic_id, &append.partition, &b.producer_id],
                )
                .await?;
            if b.txn_kind == txn_kind::ABORT {
                let first: i64 = match open {
                    Some(row) => row.try_get(0)?,
                    None => base,
                };
                tx.execute(
                    "INSERT INTO shared_storage_aborted_txns
                         (topic_id, partition, producer_id, first_offset, last_offset)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &append.topic_id,
                        &append.partition,
                        &b.producer_id,
                        &first,
                        &last,
                    ],
                )
                .await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Records an object no index row points into, for the collector (a commit whose outcome was
/// unknown may have landed after all: then it is not recorded). Best effort: when
/// PostgreSQL is the reason the commit failed this fails too, and the intake keeps the key
/// to record later.
pub async fn record_orphan(
    client: &Client,
    object_key: &str,
    size_bytes: u64,
    reason: &str,
) -> Result<(), SharedStorageError> {
    let size = i64::try_from(size_bytes).unwrap_or(i64::MAX);
    client
        .execute(
            "INSERT INTO shared_storage_orphan_objects (object_key, size_bytes, reason)
             SELECT $1, $2, $3
              WHERE NOT EXISTS (SELECT 1 FROM shared_storage_batches WHERE object_key = $1)
             ON CONFLICT (object_key) DO NOTHING",
            &[&object_key, &size, &reason],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(last_sequence(0, 1), 0);
        assert_eq!(last_sequence(5, 10), 14);
        assert_eq!(last_sequence(i32::MAX, 1), i32::MAX);
        assert_eq!(last_sequence(i32::MAX, 2), 0);
        assert_eq!(next_sequence(i32::MAX), 0);
        assert_eq!(next_sequence(7), 8);
    }
}
