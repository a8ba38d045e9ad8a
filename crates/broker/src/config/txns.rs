//! The transaction coordinator's slice of the broker configuration: Kafka's `transaction.*`
//! and `transactional.id.*` settings, parsed once at start-up into [`TxnConfig`].

use strom_transaction_coordinator::TxnConfig;

use super::{parse_i64, ConfigError, RawConfig};

/// The highest `transaction.version` feature level this broker serves (KIP-890 part 2).
pub const MAX_TRANSACTION_VERSION: i16 = 2;

pub fn txn_config(raw: &RawConfig) -> Result<TxnConfig, ConfigError> {
    let d = TxnConfig::default();
    let get = |k: &str, default: i64, min: i64, max: i64| -> Result<i64, ConfigError> {
        match raw.get(k) {
            Some(v) => parse_i64(k, v, min, max),
            None => Ok(default),
        }
    };
    let int_max = i32::MAX as i64;
    Ok(TxnConfig {
        transaction_max_timeout_ms: get(
            "transaction.max.timeout.ms",
            d.transaction_max_timeout_ms as i64,
            1,
            int_max,
        )? as i32,
        transactional_id_expiration_ms: get(
            "transactional.id.expiration.ms",
            d.transactional_id_expiration_ms,
            1,
            int_max,
        )?,
        abort_timed_out_interval_ms: get(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            d.abort_timed_out_interval_ms,
            1,
            int_max,
        )?,
        remove_expired_interval_ms: get(
            "transaction.remove.expired.transaction.cleanup.interval.ms",
            d.remove_expired_interval_ms,
            1,
            int_max,
        )?,
        state_log_num_partitions: get(
            "transaction.state.log.num.partitions",
            d.state_log_num_partitions as i64,
            1,
            10_000,
        )? as i32,
        state_log_replication_factor: get(
            "transaction.state.log.replication.factor",
            d.state_log_replication_factor as i64,
            1,
            i16::MAX as i64,
        )? as i16,
        // The floor a log opens with (a batch header), as for offsets.topic.segment.bytes.
        state_log_segment_bytes: get(
            "transaction.state.log.segment.bytes",
            d.state_log_segment_bytes,
            strom_log::batch::RECORD_BATCH_HEADER_SIZE as i64,
            int_max,
        )?,
        state_log_min_isr: get(
            "transaction.state.log.min.isr",
            d.state_log_min_isr as i64,
            1,
            int_max,
        )? as i32,
        transaction_version_level: get(
            "transaction.version",
            d.transaction_version_level as i64,
            0,
            MAX_TRANSACTION_VERSION as i64,
        )? as i16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas_and_bounds_are_checked() {
        let c = txn_config(&RawConfig::defaults()).unwrap();
        assert_eq!(c, TxnConfig::default());
        let mut raw = RawConfig::defaults();
        raw.set("transaction.max.timeout.ms", "0", "t").unwrap();
        assert!(txn_config(&raw).is_err());
        let mut raw = RawConfig::defaults();
        raw.set("transaction.state.log.num.partitions", "3", "t")
            .unwrap();
        raw.set(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            "500",
            "t",
        )
        .unwrap();
        let c = txn_config(&raw).unwrap();
        assert_eq!(c.state_log_num_partitions, 3);
        assert_eq!(c.abort_timed_out_interval_ms, 500);
        let mut raw = RawConfig::defaults();
        raw.set("transaction.version", "3", "t").unwrap();
        assert!(txn_config(&raw).is_err(), "no transaction.version 3 yet");
        raw.set("transaction.version", "2", "t").unwrap();
        assert_eq!(txn_config(&raw).unwrap().transaction_version_level, 2);
    }
}
