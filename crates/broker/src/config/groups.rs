//! The group coordinator's slice of the broker configuration: Kafka's `group.*` and
//! `offsets.*` settings, parsed once at start-up into [`GroupConfig`].

use strom_group_coordinator::assignor::Assignor;
use strom_group_coordinator::GroupConfig;

use super::{parse_i64, ConfigError, RawConfig};

pub fn group_config(raw: &RawConfig) -> Result<GroupConfig, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_bounds() {
        let raw = RawConfig::defaults();
        let c = group_config(&raw).unwrap();
        assert_eq!(c, GroupConfig::default());
        let mut raw = RawConfig::defaults();
        raw.set("group.min.session.timeout.ms", "10000", "t")
            .unwrap();
        raw.set("group.max.session.timeout.ms", "5000", "t")
            .unwrap();
        assert!(group_config(&raw).is_err());
    }
}
