//! Strom's transaction coordinator, Kafka's `transaction-coordinator` module (KIP-98,
//! KIP-360, KIP-890): transactional ids, their producer ids and epochs, and the two-phase
//! commit of a transaction.
//!
//! * [`state`] is one id's state machine (Kafka's `TransactionMetadata`), free of I/O and
//!   clocks: each request plans a transition, returned as data (the next state, the record to
//!   write, the COMMIT/ABORT markers to send).
//! * [`records`] encodes the `__transaction_state` records with Kafka's own key and value
//!   schemas, so Kafka tools can read the topic.
//! * [`coordinator`] hosts ids per `__transaction_state` partition (loaded by [`loader`] when
//!   the metadata image makes this node its leader), writes their records, sends markers.
//! * [`ports`] is all it asks of the broker: the log of `__transaction_state`, the image and
//!   producer ids, a marker writer, a clock. No broker type appears here.
//!
//! An id's records go to partition `abs(java_hash(transactional_id)) % partitions`, as Kafka
//! places them, and the partition's leader is the id's coordinator.

pub mod coordinator;
pub mod loader;
pub mod ports;
pub mod records;
pub mod state;

use std::collections::BTreeMap;

pub use coordinator::{LocalVerifier, TransactionCoordinator};
pub use ports::{Cluster, MarkerSink, PartitionVerifier, Ports, TransactionLog};

/// The internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Transaction settings, parsed once from the broker configuration (Kafka's names and
/// defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_timed_out_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub remove_expired_interval_ms: i64,
    /// `transaction.state.log.num.partitions`.
    pub state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (Kafka's 3; a node of one has one).
    pub state_log_replication_factor: i16,
    /// `transaction.state.log.segment.bytes`.
    pub state_log_segment_bytes: i64,
    /// `transaction.state.log.min.isr` (Kafka's 2; a node of one has one).
    pub state_log_min_isr: i32,
    /// The cluster's finalized `transaction.version` feature level, which picks the value
    /// version of the records (not the client's version, as in Kafka). 0 until the broker
    /// finalizes the feature.
    pub transaction_version_level: i16,
}

impl TxnConfig {
    /// The configs `__transaction_state` is created with, as Kafka's
    /// `TransactionStateManager.transactionTopicConfigs`: compacted (the last record of an id
    /// is its state), uncompressed, never elected from an out-of-sync replica.
    pub fn topic_configs(&self) -> BTreeMap<String, String> {
        [
            ("cleanup.policy", "compact".to_string()),
            ("compression.type", "uncompressed".to_string()),
            ("unclean.leader.election.enable", "false".to_string()),
            ("segment.bytes", self.state_log_segment_bytes.to_string()),
            ("min.insync.replicas", self.state_log_min_isr.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3_600_000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
            state_log_num_partitions: 50,
            state_log_replication_factor: 1,
            state_log_segment_bytes: 104_857_600,
            state_log_min_isr: 1,
            transaction_version_level: 0,
        }
    }
}
