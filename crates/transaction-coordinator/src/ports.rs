//! What the transaction coordinator needs from the broker around it, and nothing more: the
//! partitions of `__transaction_state` (append, durability, read), the metadata image,
//! producer ids, a clock, and a way to write COMMIT/ABORT markers into the partitions of a
//! transaction. The broker implements these over its replica manager and controller; tests
//! implement them in memory. The small types are the group coordinator's, so one clock and
//! one append result serve both coordinators.

use std::collections::BTreeMap;
use std::sync::Arc;

use proto_kafka::ResponseError;
use strom_metadata::MetadataImage;

pub use strom_group_coordinator::ports::{
    AppendedRange, Clock, PortFuture, ReadError, StartedAppend, SystemClock,
};

use crate::state::{Marker, TopicPartition, Verified};

/// The partitions of `__transaction_state`: the same port as the group coordinator's
/// partitions of `__consumer_offsets` (append, durability, offsets, read), so the broker
/// implements it once for both internal topics.
pub use strom_group_coordinator::ports::OffsetsLog as TransactionLog;

/// What the coordinator asks of the controller and the metadata.
pub trait Cluster: Send + Sync + 'static {
    fn image(&self) -> Arc<MetadataImage>;

    /// A producer id never given before (Kafka's `ProducerIdManager`), shared with the
    /// idempotent producers of InitProducerId without a transactional id.
    fn next_producer_id(&self) -> Result<i64, ResponseError>;

    /// Creates `__transaction_state` with these settings; Ok when it exists afterwards.
    fn create_transaction_state_topic(
        &self,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> PortFuture<Result<(), String>>;
}

/// Writes control batches (WriteTxnMarkers' work) to the partitions of transactions. The
/// answer has one result per marker, in order: Ok once the marker is in the partition's log.
/// The coordinator retries the retriable errors and drops markers of partitions that no
/// longer exist, as Kafka's `TransactionMarkerChannelManager` does.
pub trait MarkerSink: Send + Sync + 'static {
    fn write_markers(&self, markers: Vec<Marker>) -> PortFuture<Vec<Result<(), ResponseError>>>;
}

/// What a partition leader asks the coordinator of a transactional id before it takes that
/// transaction's data (KIP-890 part 1, Kafka's `AddPartitionsToTxnManager` with
/// `verify_only`): per partition, whether it is in the producer's ongoing transaction. The
/// coordinator itself answers in process; a leader whose coordinator is another node sends
/// AddPartitionsToTxn v4+ there through the same port. With `add` (a transaction version 2
/// producer, whose produce replaces its AddPartitionsToTxn: KIP-890 part 2) the partitions
/// are added to the transaction instead of checked.
pub trait PartitionVerifier: Send + Sync + 'static {
    fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
        add: bool,
    ) -> PortFuture<Result<Verified, ResponseError>>;
}

/// The coordinator's ports, together.
#[derive(Clone)]
pub struct Ports {
    pub log: Arc<dyn TransactionLog>,
    pub cluster: Arc<dyn Cluster>,
    pub markers: Arc<dyn MarkerSink>,
    pub clock: Arc<dyn Clock>,
}
