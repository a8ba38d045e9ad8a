//! Strom's group coordinator, Kafka's `group-coordinator` module: the classic consumer group
//! protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), KIP-848 consumer groups
//! (ConsumerGroupHeartbeat), and committed offsets (OffsetCommit, OffsetFetch, OffsetDelete).
//!
//! * [`state`] is the state machine of one classic group and its offsets, [`consumer`] that of
//!   a KIP-848 group with [`assignor`]; both are free of I/O and clocks (time is passed in),
//!   so they are tested deterministically. They follow Kafka's `GroupMetadata` and
//!   `ConsumerGroup`: states, generations / epochs, KIP-394 member ids, KIP-345 static members.
//! * [`records`] and [`consumer_records`] encode the `__consumer_offsets` records with Kafka's
//!   own key and value schemas, so Kafka tools can read the topic.
//! * [`runtime`] hosts groups per `__consumer_offsets` partition: loaded ([`loader`]) when the
//!   metadata image makes this node its leader, unloaded when it stops being so.
//! * [`coordinator`] is what each request does to a group; [`writer`] appends the records it
//!   makes (durable before a client is told); [`timers`] runs session, rebalance, sync and
//!   retention deadlines.
//! * [`ports`] is all the coordinator asks of the broker: the image, the partitions of
//!   `__consumer_offsets`, the creation of that topic, a clock. No broker type appears here.
//!
//! A group's records go to partition `abs(java_hash(group_id)) % partitions`, as Kafka places
//! them, and the partition's leader is the group's coordinator.

pub mod assignor;
pub mod consumer;
pub mod consumer_records;
pub mod coordinator;
pub mod loader;
pub mod ports;
pub mod records;
pub mod runtime;
pub mod state;
pub mod timers;
pub mod writer;

pub use coordinator::GroupCoordinator;
pub use ports::{Clock, Cluster, OffsetsLog, Ports, SystemClock};
pub use runtime::MAX_GROUPS;

use assignor::Assignor;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Group settings, parsed once from the broker configuration (Kafka's names and defaults
/// unless noted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    pub initial_rebalance_delay_ms: i64,
    pub min_session_timeout_ms: i64,
    pub max_session_timeout_ms: i64,
    /// Members plus KIP-394 pending members of one group.
    pub max_size: usize,
    pub offset_metadata_max_bytes: usize,
    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_replication_factor: i16,
    pub offsets_topic_segment_bytes: i64,
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval_ms: i64,
    /// KIP-848 groups: session timeout and heartbeat interval are the broker's, not the
    /// member's.
    pub consumer_session_timeout_ms: i64,
    pub consumer_heartbeat_interval_ms: i64,
    pub consumer_max_size: usize,
    /// The first is the default.
    pub consumer_assignors: Vec<Assignor>,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: DEFAULT_GROUP_MAX_SIZE,
            offset_metadata_max_bytes: 4096,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 1,
            offsets_topic_segment_bytes: 104_857_600,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            offsets_retention_check_interval_ms: 600_000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_max_size: DEFAULT_GROUP_MAX_SIZE,
            consumer_assignors: vec![Assignor::Uniform, Assignor::Range],
        }
    }
}

/// Strom's default `group.max.size`. Kafka's is unbounded; a bound keeps one group's join
/// response (every member's metadata goes to the leader) and its metadata record a sane size.
pub const DEFAULT_GROUP_MAX_SIZE: usize = 1000;

/// Java's `String.hashCode`: over UTF-16 code units, wrapping. Kafka places a group with it.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition of a group: Kafka's `Utils.abs(hashCode) % n`, where
/// `Utils.abs(Integer.MIN_VALUE)` is 0.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_java() {
        // Values from java.lang.String#hashCode.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("test-group"), 627_841_412);
        // Overflowing and non-ASCII (UTF-16 code units, one surrogate pair).
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(java_string_hash("é"), 233);
        assert_eq!(java_string_hash("😀"), 1_772_899);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        assert_eq!(partition_for("test-group", 50), 12);
    }
}
