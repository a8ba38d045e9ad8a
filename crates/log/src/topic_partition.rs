//! Partition identity and Kafka's `<topic>-<partition>` directory naming.

use std::fmt;

use crate::error::LogError;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// Directory name as Kafka lays it out: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a `<topic>-<partition>` directory name. Topic names may contain '-', so the
    /// partition is what follows the last one. Kafka's `...-delete` / `...-future` directories
    /// are rejected (their suffix is not a partition number).
    pub fn parse_dir_name(name: &str) -> Result<Self, LogError> {
        let invalid = || LogError::InvalidDirName(name.to_string());
        let (topic, partition) = name.rsplit_once('-').ok_or_else(invalid)?;
        if topic.is_empty()
            || partition.is_empty()
            || !partition.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        let partition: i32 = partition.parse().map_err(|_| invalid())?;
        Ok(TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dir_names() {
        let tp = TopicPartition::new("my-topic.v2", 17);
        assert_eq!(tp.dir_name(), "my-topic.v2-17");
        assert_eq!(
            TopicPartition::parse_dir_name("my-topic.v2-17").unwrap(),
            tp
        );
        for bad in [
            "nodash",
            "-3",
            "t-",
            "t-x",
            "t-0.abc-delete",
            "t-99999999999",
        ] {
            assert!(TopicPartition::parse_dir_name(bad).is_err(), "{bad}");
        }
    }
}
