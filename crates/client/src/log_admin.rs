//! Administration of partition logs: DeleteRecords (moving the log start
//! offset) and DescribeLogDirs (sizes on disk).

use std::collections::BTreeMap;

use proto_kafka::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use proto_kafka::messages::describe_log_dirs_request::DescribableLogDirTopic;
use proto_kafka::messages::{DeleteRecordsRequest, DescribeLogDirsRequest, TopicName};
use proto_kafka::protocol::StrBytes;

use crate::client::Client;
use crate::error::{Error, KafkaCode, Result};

/// DeleteRecords' offset meaning "up to the high watermark".
pub const DELETE_TO_HIGH_WATERMARK: i64 = -1;

/// One log directory of one broker, as DescribeLogDirs reports it.
#[derive(Clone, Debug)]
pub struct LogDirInfo {
    pub broker: i32,
    pub path: String,
    pub error_code: i16,
    /// -1 when the broker does not say (before DescribeLogDirs v4).
    pub total_bytes: i64,
    pub usable_bytes: i64,
    pub partitions: Vec<LogDirPartition>,
}

#[derive(Clone, Debug)]
pub struct LogDirPartition {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: i64,
    pub offset_lag: i64,
    pub is_future: bool,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

impl Client {
    /// DeleteRecords for partitions of one topic, each sent to its leader:
    /// every record before the given offset goes
    /// ([`DELETE_TO_HIGH_WATERMARK`]: all). Returns each partition's new
    /// low watermark (log start offset).
    pub async fn delete_records(
        &self,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<BTreeMap<i32, Result<i64>>> {
        let mut out = BTreeMap::new();
        let mut todo: Vec<i32> = offsets.keys().copied().collect();
        let timeout_ms = i32::try_from(self.request_timeout().as_millis()).unwrap_or(i32::MAX);
        for attempt in 0..3 {
            if todo.is_empty() {
                break;
            }
            if attempt > 0 || todo.iter().any(|p| self.cached_leader(topic, *p).is_none()) {
                self.topic_metadata(topic, false).await?;
            }
            let by_leader = self.group_by_leader(topic, &todo, &mut out);
            let mut retry = Vec::new();
            for (leader, parts) in by_leader {
                let sent = async {
                    let conn = self.broker(leader).await?;
                    let version = conn.version::<DeleteRecordsRequest>()?;
                    let req = DeleteRecordsRequest::default()
                        .with_timeout_ms(timeout_ms)
                        .with_topics(vec![DeleteRecordsTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(
                                parts
                                    .iter()
                                    .map(|p| {
                                        DeleteRecordsPartition::default()
                                            .with_partition_index(*p)
                                            .with_offset(
                                                offsets
                                                    .get(p)
                                                    .copied()
                                                    .unwrap_or(DELETE_TO_HIGH_WATERMARK),
                                            )
                                    })
                                    .collect(),
                            )]);
                    conn.send(version, &req).await
                }
                .await;
                let resp = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        let again = e.is_retriable();
                        for p in parts {
                            out.insert(p, Err(e.clone()));
                            if again {
                                retry.push(p);
                            }
                        }
                        continue;
                    }
                };
                for p in parts {
                    let r = resp
                        .topics
                        .iter()
                        .filter(|t| t.name.0.as_str() == topic)
                        .flat_map(|t| t.partitions.iter())
                        .find(|r| r.partition_index == p);
                    let result = match r {
                        None => Err(Error::Other(format!(
                            "the broker did not answer DeleteRecords for {topic}[{p}]"
                        ))),
                        Some(r) if r.error_code != 0 => {
                            if KafkaCode(r.error_code).needs_metadata_refresh() {
                                retry.push(p);
                            }
                            Err(Error::kafka(
                                format!("delete records of {topic}[{p}]"),
                                r.error_code,
                                None,
                            ))
                        }
                        Some(r) => Ok(r.low_watermark),
                    };
                    out.insert(p, result);
                }
            }
            todo = retry;
        }
        Ok(out)
    }

    /// DescribeLogDirs on every broker for the given partitions (`None`:
    /// all). A broker that cannot be asked is an `Err` in its place.
    pub async fn describe_log_dirs(
        &self,
        partitions: Option<&BTreeMap<String, Vec<i32>>>,
    ) -> Result<Vec<(i32, Result<Vec<LogDirInfo>>)>> {
        let topics = partitions.map(|m| {
            m.iter()
                .map(|(t, ps)| {
                    DescribableLogDirTopic::default()
                        .with_topic(topic_name(t))
                        .with_partitions(ps.clone())
                })
                .collect::<Vec<_>>()
        });
        let req = DescribeLogDirsRequest::default().with_topics(topics);
        let mut out = Vec::new();
        for (broker, conn) in self.all_brokers().await? {
            let answer = async {
                let conn = conn?;
                let version = conn.version::<DescribeLogDirsRequest>()?;
                let resp = conn.send(version, &req).await?;
                if resp.error_code != 0 {
                    return Err(Error::kafka("DescribeLogDirs", resp.error_code, None));
                }
                Ok(resp
                    .results
                    .iter()
                    .map(|d| LogDirInfo {
                        broker,
                        path: d.log_dir.to_string(),
                        error_code: d.error_code,
                        total_bytes: if version >= 4 { d.total_bytes } else { -1 },
                        usable_bytes: if version >= 4 { d.usable_bytes } else { -1 },
                        partitions: d
                            .topics
                            .iter()
                            .flat_map(|t| {
                                t.partitions.iter().map(|p| LogDirPartition {
                                    topic: t.name.0.to_string(),
                                    partition: p.partition_index,
                                    size_bytes: p.partition_size,
                                    offset_lag: p.offset_lag,
                                    is_future: p.is_future_key,
                                })
                            })
                            .collect(),
                    })
                    .collect())
            }
            .await;
            out.push((broker, answer));
        }
        Ok(out)
    }
}
