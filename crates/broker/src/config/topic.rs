//! Topic-level configuration: Kafka's topic config names, each defaulting to its broker synonym.

use std::collections::BTreeMap;

use super::{
    parse_i64, parse_ratio, parse_timestamp_type, ConfigError, ConfigSource, ConfigType, RawConfig,
    TimestampType, TOPIC_CONFIGS,
};

/// Room for one entry in an offset index (strom-log's floor).
const MIN_SEGMENT_INDEX_BYTES: i64 = 12;

/// DescribeConfigs' source for a value set on the topic itself.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub cleanup_policy: String,
    pub max_message_bytes: i32,
    pub message_timestamp_type: TimestampType,
    pub min_insync_replicas: i32,
    pub retention_bytes: i64,
    pub retention_ms: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub segment_index_bytes: i64,
    pub index_interval_bytes: i64,
    pub flush_messages: i64,
    pub flush_ms: Option<i64>,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    /// compression.type: `None` for `producer` (batches kept as sent).
    pub compression: Option<strom_log::Compression>,
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
}

/// One row of DescribeConfigs for a topic.
pub struct DescribedConfig {
    pub name: &'static str,
    pub value: Option<String>,
    pub source: i8,
    pub ty: ConfigType,
    /// The broker setting this one defaults to, with its value and source, for synonyms.
    pub broker_synonym: Option<(&'static str, String, i8)>,
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// The broker-level default of a topic setting, resolving Kafka's ms/minutes/hours families.
fn broker_value(raw: &RawConfig, topic_key: &str) -> Result<(String, i8), ConfigError> {
    let src = |k: &str| raw.source(k) as i8;
    let hours_family =
        |ms: &str, minutes: Option<&str>, hours: &str| -> Result<(String, i8), ConfigError> {
            if let Some(v) = raw.get(ms) {
                return Ok((v.to_string(), src(ms)));
            }
            if let Some(m) = minutes.and_then(|k| raw.get(k).map(|v| (k, v))) {
                let n = parse_i64(m.0, m.1, -1, i64::MAX / 60_000)?;
                return Ok(((if n < 0 { -1 } else { n * 60_000 }).to_string(), src(m.0)));
            }
            let h = raw.get(hours).unwrap_or("168");
            let n = parse_i64(hours, h, -1, i64::MAX / 3_600_000)?;
            Ok((
                (if n < 0 { -1 } else { n * 3_600_000 }).to_string(),
                src(hours),
            ))
        };
    match topic_key {
        "retention.ms" => hours_family(
            "log.retention.ms",
            Some("log.retention.minutes"),
            "log.retention.hours",
        ),
        "segment.ms" => hours_family("log.roll.ms", None, "log.roll.hours"),
        "flush.ms" => Ok((
            raw.get("log.flush.interval.ms")
                .unwrap_or("9223372036854775807")
                .to_string(),
            src("log.flush.interval.ms"),
        )),
        other => {
            let synonym = TOPIC_CONFIGS
                .iter()
                .find(|(t, _, _)| *t == other)
                .map(|(_, b, _)| *b)
                .unwrap_or(other);
            Ok((raw.get(synonym).unwrap_or("").to_string(), src(synonym)))
        }
    }
}

impl TopicConfig {
    pub fn broker_defaults(raw: &RawConfig) -> Result<TopicConfig, ConfigError> {
        Self::effective(raw, &BTreeMap::new())
    }

    /// The configuration of a topic with `overrides` on top of the broker's defaults. Rejects
    /// unknown names and bad values (CreateTopics and AlterConfigs answer INVALID_CONFIG).
    pub fn effective(
        raw: &RawConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, ConfigError> {
        let config = Self::parse(raw, overrides)?;
        // Whatever the floors in `parse` miss, the log's own check catches before anything is
        // stored: a configuration is valid only if a log accepts it.
        config
            .log_config()
            .validate()
            .map_err(|e| invalid("topic configuration", "", &e.to_string()))?;
        Ok(config)
    }

    /// [`TopicConfig::effective`] for a configuration that was stored earlier (a topic's
    /// overrides in the metadata image): an override that is not valid with the broker settings
    /// in force is left out, so the topic keeps its other overrides, and returned so that the
    /// caller can report it. Only the broker defaults themselves being invalid is an error.
    pub fn effective_lenient(
        raw: &RawConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(TopicConfig, Vec<(String, ConfigError)>), ConfigError> {
        if let Ok(c) = Self::effective(raw, overrides) {
            return Ok((c, Vec::new()));
        }
        let mut kept = BTreeMap::new();
        let mut dropped = Vec::new();
        for (k, v) in overrides {
            kept.insert(k.clone(), v.clone());
            if let Err(e) = Self::effective(raw, &kept) {
                kept.remove(k);
                dropped.push((k.clone(), e));
            }
        }
        Ok((Self::effective(raw, &kept)?, dropped))
    }

    fn parse(
        raw: &RawConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, ConfigError> {
        // The floors are what a log can be opened with (strom-log refuses less): a batch
        // header for max.message.bytes and segment.bytes (Kafka: 0 and 14), one index entry
        // for segment.index.bytes (Kafka: 4). A lower value accepted here would be stored and
        // then fail every log it reaches.
        let batch_header = strom_log::batch::RECORD_BATCH_HEADER_SIZE as i64;
        for k in overrides.keys() {
            if !TOPIC_CONFIGS.iter().any(|(t, _, _)| t == k) {
                return Err(ConfigError::Unknown {
                    key: k.clone(),
                    origin: "topic configs".to_string(),
                });
            }
        }
        let value = |k: &str| -> Result<String, ConfigError> {
            match overrides.get(k) {
                Some(v) => Ok(v.clone()),
                None => Ok(broker_value(raw, k)?.0),
            }
        };
        let long = |k: &str, min: i64| -> Result<i64, ConfigError> {
            parse_i64(k, &value(k)?, min, i64::MAX)
        };
        let int = |k: &str, min: i64| -> Result<i64, ConfigError> {
            parse_i64(k, &value(k)?, min, i32::MAX as i64)
        };

        let cleanup_policy = value("cleanup.policy")?;
        for p in cleanup_policy.split(',').map(str::trim) {
            if p != "delete" && p != "compact" {
                return Err(invalid(
                    "cleanup.policy",
                    &cleanup_policy,
                    "must be delete and/or compact",
                ));
            }
        }
        let compression_type = value("compression.type")?;
        let compression = match compression_type.as_str() {
            "producer" => None,
            "uncompressed" => Some(strom_log::Compression::None),
            "gzip" => Some(strom_log::Compression::Gzip),
            "snappy" => Some(strom_log::Compression::Snappy),
            "lz4" => Some(strom_log::Compression::Lz4),
            "zstd" => Some(strom_log::Compression::Zstd),
            _ => {
                return Err(invalid(
                    "compression.type",
                    &compression_type,
                    "must be one of uncompressed, zstd, lz4, snappy, gzip, producer",
                ))
            }
        };
        let level = |k: &str, range: std::ops::RangeInclusive<i32>, also: Option<i32>| {
            let v = value(k)?;
            let n = parse_i64(k, &v, i64::from(i32::MIN), i64::from(i32::MAX))? as i32;
            if !range.contains(&n) && Some(n) != also {
                let or = also.map(|a| format!(" or {a}")).unwrap_or_default();
                return Err(invalid(
                    k,
                    &v,
                    &format!("must be in [{}, {}]{or}", range.start(), range.end()),
                ));
            }
            Ok(n)
        };
        let compression_gzip_level = level(
            "compression.gzip.level",
            strom_log::config::GZIP_LEVELS,
            Some(strom_log::config::DEFAULT_GZIP_LEVEL),
        )?;
        let compression_lz4_level =
            level("compression.lz4.level", strom_log::config::LZ4_LEVELS, None)?;
        let compression_zstd_level = level(
            "compression.zstd.level",
            strom_log::config::ZSTD_LEVELS,
            None,
        )?;
        let flush_ms = long("flush.ms", 0)?;
        // segment.bytes and max.message.bytes start at `batch_header` (see the floors above).
        Ok(TopicConfig {
            cleanup_policy,
            max_message_bytes: int("max.message.bytes", batch_header)? as i32,
            message_timestamp_type: parse_timestamp_type(
                "message.timestamp.type",
                &value("message.timestamp.type")?,
            )?,
            min_insync_replicas: int("min.insync.replicas", 1)? as i32,
            retention_bytes: long("retention.bytes", i64::MIN)?,
            retention_ms: long("retention.ms", -1)?,
            segment_bytes: int("segment.bytes", batch_header)?,
            segment_ms: long("segment.ms", 1)?,
            segment_index_bytes: int("segment.index.bytes", MIN_SEGMENT_INDEX_BYTES)?,
            index_interval_bytes: int("index.interval.bytes", 0)?,
            flush_messages: long("flush.messages", 1)?,
            flush_ms: if flush_ms == i64::MAX {
                None
            } else {
                Some(flush_ms)
            },
            delete_retention_ms: long("delete.retention.ms", 0)?,
            min_cleanable_dirty_ratio: parse_ratio(
                "min.cleanable.dirty.ratio",
                &value("min.cleanable.dirty.ratio")?,
            )?,
            compression,
            compression_gzip_level,
            compression_lz4_level,
            compression_zstd_level,
        })
    }

    pub fn log_config(&self) -> strom_log::LogConfig {
        strom_log::LogConfig {
            segment_bytes: self.segment_bytes as u64,
            segment_ms: self.segment_ms,
            segment_index_bytes: self.segment_index_bytes as u64,
            index_interval_bytes: self.index_interval_bytes as u64,
            max_message_bytes: self.max_message_bytes.max(0) as usize,
            message_timestamp_type: match self.message_timestamp_type {
                TimestampType::CreateTime => strom_log::TimestampType::CreateTime,
                TimestampType::LogAppendTime => strom_log::TimestampType::LogAppendTime,
            },
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            cleanup_delete: self.has_policy("delete"),
            cleanup_compact: self.has_policy("compact"),
            delete_retention_ms: self.delete_retention_ms,
            min_cleanable_dirty_ratio: self.min_cleanable_dirty_ratio,
            compression: self.compression,
            compression_gzip_level: self.compression_gzip_level,
            compression_lz4_level: self.compression_lz4_level,
            compression_zstd_level: self.compression_zstd_level,
        }
    }

    fn has_policy(&self, policy: &str) -> bool {
        self.cleanup_policy.split(',').any(|p| p.trim() == policy)
    }

    /// Every topic setting with its value and source, for DescribeConfigs.
    pub fn describe(
        raw: &RawConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Vec<DescribedConfig>, ConfigError> {
        let mut out = Vec::new();
        for (name, synonym, ty) in TOPIC_CONFIGS {
            let (bv, bsrc) = broker_value(raw, name)?;
            let broker_synonym = if bsrc != ConfigSource::Default as i8 {
                Some((*synonym, bv.clone(), bsrc))
            } else {
                None
            };
            let (value, source) = match overrides.get(*name) {
                Some(v) => (v.clone(), SOURCE_DYNAMIC_TOPIC),
                None => (bv, bsrc),
            };
            out.push(DescribedConfig {
                name,
                value: Some(value),
                source,
                ty: *ty,
                broker_synonym,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod floor_tests {
    use super::*;

    /// The class behind message.max.bytes=16: whatever value `effective` accepts for any topic
    /// setting, a log accepts too (it used to be stored and then fail every log it reached).
    #[test]
    fn every_accepted_value_opens_a_log() {
        let raw = RawConfig::defaults();
        let values = [
            "-9223372036854775808",
            "-2",
            "-1",
            "0",
            "1",
            "4",
            "11",
            "12",
            "13",
            "14",
            "16",
            "60",
            "61",
            "62",
            "2147483647",
            "2147483648",
            "9223372036854775807",
            "0.5",
            "NaN",
            "inf",
            "",
            "garbage",
            "delete,compact",
            "LogAppendTime",
            "producer",
        ];
        for (name, _, _) in TOPIC_CONFIGS {
            for v in values {
                let mut o = BTreeMap::new();
                o.insert(name.to_string(), v.to_string());
                if let Ok(c) = TopicConfig::effective(&raw, &o) {
                    assert!(c.log_config().validate().is_ok(), "{name}={v} accepted");
                }
            }
        }
        for (k, v) in [
            ("max.message.bytes", "16"),
            ("segment.bytes", "14"),
            ("segment.index.bytes", "4"),
        ] {
            let mut o = BTreeMap::new();
            o.insert(k.to_string(), v.to_string());
            assert!(TopicConfig::effective(&raw, &o).is_err(), "{k}={v}");
        }
    }

    /// A stored override that is not valid is dropped on its own; the others stay.
    #[test]
    fn lenient_keeps_the_valid_overrides() {
        let raw = RawConfig::defaults();
        let mut o = BTreeMap::new();
        o.insert("max.message.bytes".to_string(), "16".to_string());
        o.insert("cleanup.policy".to_string(), "compact".to_string());
        o.insert("bogus".to_string(), "1".to_string());
        let (c, dropped) = TopicConfig::effective_lenient(&raw, &o).unwrap();
        assert_eq!(c.cleanup_policy, "compact");
        assert_eq!(c.max_message_bytes, 1_048_588);
        let names: Vec<&str> = dropped.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["bogus", "max.message.bytes"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_broker_synonyms() {
        let mut raw = RawConfig::defaults();
        let d = TopicConfig::broker_defaults(&raw).unwrap();
        assert_eq!(d.retention_ms, 604_800_000);
        assert_eq!(d.segment_bytes, 1_073_741_824);
        assert_eq!(d.max_message_bytes, 1_048_588);
        raw.set("log.retention.hours", "1", "t").unwrap();
        raw.set("message.max.bytes", "5000", "t").unwrap();
        let d = TopicConfig::broker_defaults(&raw).unwrap();
        assert_eq!(d.retention_ms, 3_600_000);
        assert_eq!(d.max_message_bytes, 5000);
        let rows = TopicConfig::describe(&raw, &BTreeMap::new()).unwrap();
        let r = rows.iter().find(|r| r.name == "retention.ms").unwrap();
        assert_eq!(r.value.as_deref(), Some("3600000"));
        assert_eq!(r.source, ConfigSource::StaticBroker as i8);
    }

    #[test]
    fn overrides_validated() {
        let raw = RawConfig::defaults();
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        assert_eq!(TopicConfig::effective(&raw, &o).unwrap().retention_ms, 1000);
        o.insert("retention.ms".to_string(), "soon".to_string());
        assert!(TopicConfig::effective(&raw, &o).is_err());
        let mut o = BTreeMap::new();
        o.insert("bogus".to_string(), "1".to_string());
        assert!(TopicConfig::effective(&raw, &o).is_err());
        let mut o = BTreeMap::new();
        o.insert("cleanup.policy".to_string(), "shred".to_string());
        assert!(TopicConfig::effective(&raw, &o).is_err());
    }

    #[test]
    fn every_kafka_compression_type_and_level_is_accepted() {
        let raw = RawConfig::defaults();
        let with = |k: &str, v: &str| {
            let mut o = BTreeMap::new();
            o.insert(k.to_string(), v.to_string());
            TopicConfig::effective(&raw, &o)
        };
        for (name, codec) in [
            ("producer", None),
            ("uncompressed", Some(strom_log::Compression::None)),
            ("gzip", Some(strom_log::Compression::Gzip)),
            ("snappy", Some(strom_log::Compression::Snappy)),
            ("lz4", Some(strom_log::Compression::Lz4)),
            ("zstd", Some(strom_log::Compression::Zstd)),
        ] {
            let c = with("compression.type", name).unwrap();
            assert_eq!(c.compression, codec, "{name}");
            assert_eq!(c.log_config().compression, codec);
        }
        assert!(with("compression.type", "brotli").is_err());
        assert!(with("compression.type", "none").is_err());
        let d = TopicConfig::broker_defaults(&raw).unwrap();
        assert_eq!(
            (
                d.compression_gzip_level,
                d.compression_lz4_level,
                d.compression_zstd_level
            ),
            (-1, 9, 3)
        );
        assert_eq!(
            with("compression.gzip.level", "9")
                .unwrap()
                .compression_gzip_level,
            9
        );
        assert!(with("compression.gzip.level", "0").is_err());
        assert!(with("compression.gzip.level", "10").is_err());
        assert_eq!(
            with("compression.lz4.level", "17")
                .unwrap()
                .compression_lz4_level,
            17
        );
        assert!(with("compression.lz4.level", "18").is_err());
        assert_eq!(
            with("compression.zstd.level", "-5")
                .unwrap()
                .compression_zstd_level,
            -5
        );
        assert!(with("compression.zstd.level", "23").is_err());
        assert!(TopicConfig::effective(&raw, &BTreeMap::new())
            .unwrap()
            .log_config()
            .validate()
            .is_ok());
    }
}
