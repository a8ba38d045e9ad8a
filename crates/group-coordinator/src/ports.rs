//! What the coordinator needs from the broker around it, and nothing more: the current
//! metadata image, the partitions of `__consumer_offsets` (append, durability, read), the
//! creation of that topic, and a clock. The broker implements these over its replica manager
//! and controller; tests implement them in memory, so the coordinator runs without sockets,
//! disks or wall-clock time.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use proto_kafka::ResponseError;
use strom_metadata::MetadataImage;
use thiserror::Error;

pub type PortFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where an append landed: its first and last offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedRange {
    pub first_offset: i64,
    pub last_offset: i64,
}

/// An append under way. A log that numbers records as it appends them (a local log) knows
/// where they went at once, so the coordinator can apply them in log order before they are
/// durable; a log whose offsets come with its commit (shared storage, where PostgreSQL
/// sequences every broker's objects) knows only once `durable` resolves.
pub struct StartedAppend {
    /// Where the records went, when known before they are durable.
    pub range: Option<AppendedRange>,
    /// Resolves once the records are durable, to where they went.
    pub durable: PortFuture<Result<AppendedRange, ResponseError>>,
}

/// A failed read of a `__consumer_offsets` partition while loading it.
#[derive(Debug, Error)]
#[error("reading {partition}: {reason}")]
pub struct ReadError {
    pub partition: String,
    pub reason: String,
}

/// The partitions of `__consumer_offsets`, as the coordinator writes and loads them. Errors of
/// appends are the codes a producer would get for the same failure (the coordinator maps
/// them to what group clients expect, as Kafka does).
pub trait OffsetsLog: Send + Sync + 'static {
    /// Appends one encoded record batch as leader; visible at once, durable later.
    fn append(
        &self,
        partition: i32,
        batch: &mut BytesMut,
        now_ms: i64,
    ) -> Result<AppendedRange, ResponseError>;

    /// Appends one transactional batch the coordinator wrote for a producer (TxnOffsetCommit's
    /// offsets: the producer's id and epoch, the transactional attribute), as
    /// Kafka appends with the coordinator as origin: the producer's epoch is checked, its
    /// sequences are not (they number the producer's own batches, not the coordinator's).
    /// A log that tracks no producers takes it as any batch.
    fn append_transactional(
        &self,
        partition: i32,
        batch: &mut BytesMut,
        now_ms: i64,
    ) -> Result<AppendedRange, ResponseError> {
        self.append(partition, batch, now_ms)
    }

    /// Starts an append of one encoded batch (`transactional`: as
    /// [`OffsetsLog::append_transactional`]). An Err is a refusal before anything was
    /// written. By default the synchronous append followed by [`OffsetsLog::wait_durable`]; a
    /// log whose offsets exist only once committed overrides it.
    fn start_append(
        &self,
        partition: i32,
        mut batch: BytesMut,
        transactional: bool,
        now_ms: i64,
    ) -> Result<StartedAppend, ResponseError> {
        let range = if transactional {
            self.append_transactional(partition, &mut batch, now_ms)?
        } else {
            self.append(partition, &mut batch, now_ms)?
        };
        let durable = self.wait_durable(partition, range.last_offset + 1);
        Ok(StartedAppend {
            range: Some(range),
            durable: Box::pin(async move { durable.await.map(|()| range) }),
        })
    }

    /// Resolves once the partition is durable up to `end_offset` (exclusive).
    fn wait_durable(
        &self,
        partition: i32,
        end_offset: i64,
    ) -> PortFuture<Result<(), ResponseError>>;

    /// Log start and log end offsets; None when the partition is not hosted here.
    fn offsets(&self, partition: i32) -> Option<Result<(i64, i64), ReadError>>;

    /// Whole batches from `offset`, at most about `max_bytes`, below `end_offset`.
    fn read(
        &self,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        end_offset: i64,
    ) -> Result<Bytes, ReadError>;
}

/// What the coordinator asks of the controller and the metadata.
pub trait Cluster: Send + Sync + 'static {
    fn image(&self) -> Arc<MetadataImage>;

    /// Creates `__consumer_offsets` with these settings; Ok when it exists afterwards.
    fn create_offsets_topic(
        &self,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> PortFuture<Result<(), String>>;
}

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// Wall-clock milliseconds since the epoch.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// The coordinator's ports, together.
#[derive(Clone)]
pub struct Ports {
    pub log: Arc<dyn OffsetsLog>,
    pub cluster: Arc<dyn Cluster>,
    pub clock: Arc<dyn Clock>,
}
