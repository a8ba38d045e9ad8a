//! The group coordinator: Kafka's classic consumer group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) and committed offsets (OffsetCommit, OffsetFetch, OffsetDelete).
//!
//! * [`state`] is the state machine of one group, free of I/O and clocks (time is passed in),
//!   so it can be tested deterministically. It follows Kafka's `GroupCoordinator` and
//!   `GroupMetadata`: states Empty, PreparingRebalance, CompletingRebalance, Stable, Dead;
//!   generations; KIP-394 member ids; KIP-345 static members; pending-sync expiry.
//! * [`records`] encodes the `__consumer_offsets` records with Kafka's own key and value
//!   schemas, so Kafka tools can read the topic.
//! * [`coordinator`] holds the groups (one lock per group, never held across an await), writes
//!   their records through the partitions of `__consumer_offsets` (durable before a client is
//!   told), reloads them at start-up, and runs the timers (session, rebalance, sync, retention).
//!
//! This node is the coordinator of every group: a group's records go to partition
//! `abs(java_hash(group_id)) % partitions`, as Kafka places them, so the layout already matches
//! a cluster where the partition's leader is the coordinator.

pub mod assignor;
pub mod consumer;
pub mod consumer_records;
pub mod coordinator;
pub mod records;
pub mod state;

pub use coordinator::GroupCoordinator;

use crate::config::{parse_i64, ConfigError, RawConfig};
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

impl GroupConfig {
    pub fn from_raw(raw: &RawConfig) -> Result<GroupConfig, ConfigError> {
        let d = GroupConfig::default();
        let get = |k: &str, default: i64, min: i64, max: i64| -> Result<i64, ConfigError> {
            match raw.get(k) {
                Some(v) => parse_i64(k, v, min, max),
                None => Ok(default),
            }
        };
        let int_max = i32::MAX as i64;
        let min_session = get(
            "group.min.session.timeout.ms",
            d.min_session_timeout_ms,
            0,
            int_max,
        )?;
        let max_session = get(
            "group.max.session.timeout.ms",
            d.max_session_timeout_ms,
            0,
            int_max,
        )?;
        if max_session < min_session {
            return Err(ConfigError::Invalid {
                key: "group.max.session.timeout.ms".to_string(),
                value: max_session.to_string(),
                reason: format!("must be at least group.min.session.timeout.ms ({min_session})"),
            });
        }
        let consumer_session_timeout_ms = get(
            "group.consumer.session.timeout.ms",
            d.consumer_session_timeout_ms,
            1,
            int_max,
        )?;
        let consumer_heartbeat_interval_ms = get(
            "group.consumer.heartbeat.interval.ms",
            d.consumer_heartbeat_interval_ms,
            1,
            int_max,
        )?;
        if consumer_heartbeat_interval_ms >= consumer_session_timeout_ms {
            return Err(ConfigError::Invalid {
                key: "group.consumer.heartbeat.interval.ms".to_string(),
                value: consumer_heartbeat_interval_ms.to_string(),
                reason: format!(
                    "must be less than group.consumer.session.timeout.ms ({consumer_session_timeout_ms})"
                ),
            });
        }
        let consumer_assignors = match raw.get("group.consumer.assignors") {
            None => d.consumer_assignors.clone(),
            Some(v) => {
                let mut out = Vec::new();
                for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let a = Assignor::from_name(name).ok_or_else(|| ConfigError::Invalid {
                        key: "group.consumer.assignors".to_string(),
                        value: v.to_string(),
                        reason: format!("unknown assignor '{name}' (known: uniform, range)"),
                    })?;
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
                if out.is_empty() {
                    return Err(ConfigError::Invalid {
                        key: "group.consumer.assignors".to_string(),
                        value: v.to_string(),
                        reason: "needs at least one assignor".to_string(),
                    });
                }
                out
            }
        };
        Ok(GroupConfig {
            consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms,
            consumer_max_size: get(
                "group.consumer.max.size",
                d.consumer_max_size as i64,
                1,
                int_max,
            )? as usize,
            consumer_assignors,
            initial_rebalance_delay_ms: get(
                "group.initial.rebalance.delay.ms",
                d.initial_rebalance_delay_ms,
                0,
                int_max,
            )?,
            min_session_timeout_ms: min_session,
            max_session_timeout_ms: max_session,
            max_size: get("group.max.size", d.max_size as i64, 1, int_max)? as usize,
            // The value schema stores the metadata as a Kafka string (16-bit length).
            offset_metadata_max_bytes: get(
                "offset.metadata.max.bytes",
                d.offset_metadata_max_bytes as i64,
                0,
                i16::MAX as i64,
            )? as usize,
            offsets_topic_num_partitions: get(
                "offsets.topic.num.partitions",
                d.offsets_topic_num_partitions as i64,
                1,
                10_000,
            )? as i32,
            offsets_topic_replication_factor: get(
                "offsets.topic.replication.factor",
                d.offsets_topic_replication_factor as i64,
                1,
                i16::MAX as i64,
            )? as i16,
            // The offsets topic's segment.bytes: the floor a log opens with (a batch header),
            // so a value accepted here cannot fail the topic's creation later.
            offsets_topic_segment_bytes: get(
                "offsets.topic.segment.bytes",
                d.offsets_topic_segment_bytes,
                strom_log::batch::RECORD_BATCH_HEADER_SIZE as i64,
                int_max,
            )?,
            offsets_retention_ms: get(
                "offsets.retention.minutes",
                d.offsets_retention_ms / 60_000,
                1,
                int_max,
            )? * 60_000,
            offsets_retention_check_interval_ms: get(
                "offsets.retention.check.interval.ms",
                d.offsets_retention_check_interval_ms,
                1,
                i64::MAX,
            )?,
        })
    }
}

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

    #[test]
    fn config_defaults_and_bounds() {
        let raw = RawConfig::defaults();
        let c = GroupConfig::from_raw(&raw).unwrap();
        assert_eq!(c, GroupConfig::default());
        let mut raw = RawConfig::defaults();
        raw.set("group.min.session.timeout.ms", "10000", "t")
            .unwrap();
        raw.set("group.max.session.timeout.ms", "5000", "t")
            .unwrap();
        assert!(GroupConfig::from_raw(&raw).is_err());
    }
}
