//! Reading: ListOffsets and Fetch, routed to partition leaders, and the
//! decoding of fetched record batches.

use std::collections::BTreeMap;

use bytes::Bytes;
use proto_kafka::messages::fetch_request::{FetchPartition, FetchTopic};
use proto_kafka::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use proto_kafka::messages::{BrokerId, FetchRequest, ListOffsetsRequest, TopicName};
use proto_kafka::protocol::StrBytes;
use proto_kafka::records::{Record, RecordBatchDecoder};
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, KafkaCode, Result};

/// Which offset ListOffsets should find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first offset whose timestamp is >= this (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// A ListOffsets answer for one partition. `offset` is -1 when a timestamp
/// query found no record at or after the timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedOffset {
    pub offset: i64,
    pub timestamp: i64,
}

/// One partition to fetch.
#[derive(Clone, Debug)]
pub struct FetchTarget {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: i32,
}

/// What a Fetch returned for one partition.
#[derive(Clone, Debug)]
pub struct FetchedPartition {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Records at or after the fetch offset, control records left out.
    pub records: Vec<Record>,
    /// The offset after the last complete batch returned (records or
    /// control batches); the next fetch offset when `records` is empty but
    /// batches were skipped.
    pub next_offset: Option<i64>,
    /// True when the answer held bytes but not one complete batch: the
    /// partition's max bytes must grow.
    pub truncated: bool,
}

/// Decodes the complete record batches in `records`; a partial batch at the
/// end (fetch responses may cut one) is ignored. Returns the records, the
/// offset following the last complete batch, and whether bytes were
/// present but no complete batch.
pub fn decode_batches(records: &Bytes) -> Result<(Vec<Record>, Option<i64>, bool)> {
    let mut out = Vec::new();
    let mut next = None;
    let mut pos = 0usize;
    let len = records.len();
    let mut complete = 0;
    while len - pos >= 12 {
        let base_offset = i64::from_be_bytes(
            records[pos..pos + 8]
                .try_into()
                .map_err(|_| Error::Other("bad batch header".into()))?,
        );
        let batch_len = i32::from_be_bytes(
            records[pos + 8..pos + 12]
                .try_into()
                .map_err(|_| Error::Other("bad batch header".into()))?,
        );
        if batch_len < 0 {
            return Err(Error::Other(format!(
                "record batch with negative length {batch_len}"
            )));
        }
        let total = 12 + batch_len as usize;
        if len - pos < total {
            break;
        }
        let mut batch = records.slice(pos..pos + total);
        pos += total;
        complete += 1;
        // lastOffsetDelta is at byte 23 of the batch (after base offset 8,
        // length 4, leader epoch 4, magic 1, crc 4, attributes 2).
        if total >= 27 {
            let delta = i32::from_be_bytes([batch[23], batch[24], batch[25], batch[26]]);
            next = Some(base_offset + i64::from(delta) + 1);
        }
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| {
            Error::Other(format!(
                "cannot decode a fetched record batch at offset {base_offset}: {e}"
            ))
        })?;
        out.extend(set.records.into_iter().filter(|r| !r.control));
    }
    Ok((out, next, complete == 0 && len > 0))
}

impl Client {
    /// ListOffsets for partitions of one topic, each sent to its leader.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<i32, Result<ListedOffset>>> {
        let mut out = BTreeMap::new();
        let mut todo: Vec<i32> = partitions.to_vec();
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
                let conn = match self.broker(leader).await {
                    Ok(c) => c,
                    Err(e) => {
                        for p in parts {
                            out.insert(p, Err(e.clone()));
                            retry.push(p);
                        }
                        continue;
                    }
                };
                let version = conn.version::<ListOffsetsRequest>()?;
                let req = ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(
                            parts
                                .iter()
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(*p)
                                        .with_timestamp(spec.timestamp())
                                })
                                .collect(),
                        )]);
                let resp = match conn.send(version, &req).await {
                    Ok(r) => r,
                    Err(e) => {
                        for p in parts {
                            out.insert(p, Err(e.clone()));
                            retry.push(p);
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
                            "the broker did not answer ListOffsets for {topic}[{p}]"
                        ))),
                        Some(r) if r.error_code != 0 => {
                            if KafkaCode(r.error_code).needs_metadata_refresh() {
                                retry.push(p);
                            }
                            Err(Error::kafka(
                                format!("list offsets of {topic}[{p}]"),
                                r.error_code,
                                None,
                            ))
                        }
                        Some(r) => Ok(ListedOffset {
                            offset: r.offset,
                            timestamp: r.timestamp,
                        }),
                    };
                    out.insert(p, result);
                }
            }
            todo = retry;
        }
        Ok(out)
    }

    /// One Fetch request to broker `node_id` for the given partitions.
    pub async fn fetch(
        &self,
        node_id: i32,
        targets: &[FetchTarget],
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> Result<Vec<FetchedPartition>> {
        let conn = self.broker(node_id).await?;
        // Topic ids replace names from v13; use them only when known.
        let cap = if targets.iter().all(|t| !t.topic_id.is_nil()) {
            i16::MAX
        } else {
            12
        };
        let version = conn.version_capped::<FetchRequest>(cap)?;
        let by_id = version >= 13;
        let mut topics: Vec<FetchTopic> = Vec::new();
        for t in targets {
            let part = FetchPartition::default()
                .with_partition(t.partition)
                .with_fetch_offset(t.offset)
                .with_partition_max_bytes(t.max_bytes);
            let existing = topics.iter_mut().find(|ft| {
                if by_id {
                    ft.topic_id == t.topic_id
                } else {
                    ft.topic.0.as_str() == t.topic
                }
            });
            match existing {
                Some(ft) => ft.partitions.push(part),
                None => {
                    let mut ft = FetchTopic::default().with_partitions(vec![part]);
                    if by_id {
                        ft.topic_id = t.topic_id;
                    } else {
                        ft.topic = TopicName(StrBytes::from_string(t.topic.clone()));
                    }
                    topics.push(ft);
                }
            }
        }
        let req = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics);
        let resp = conn.send(version, &req).await?;
        if resp.error_code != 0 {
            return Err(Error::kafka(
                format!("Fetch from broker {node_id}"),
                resp.error_code,
                None,
            ));
        }
        let mut out = Vec::new();
        for tr in &resp.responses {
            let name = if by_id {
                match targets.iter().find(|t| t.topic_id == tr.topic_id) {
                    Some(t) => t.topic.clone(),
                    None => continue,
                }
            } else {
                tr.topic.0.to_string()
            };
            for p in &tr.partitions {
                let Some(target) = targets
                    .iter()
                    .find(|t| t.topic == name && t.partition == p.partition_index)
                else {
                    continue;
                };
                let (mut records, next_offset, truncated) = match &p.records {
                    Some(bytes) if p.error_code == 0 => decode_batches(bytes)?,
                    _ => (Vec::new(), None, false),
                };
                // A compressed batch may start before the fetch offset.
                records.retain(|r| r.offset >= target.offset);
                out.push(FetchedPartition {
                    topic: name.clone(),
                    partition: p.partition_index,
                    error_code: p.error_code,
                    high_watermark: p.high_watermark,
                    log_start_offset: p.log_start_offset,
                    records,
                    next_offset,
                    truncated,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use proto_kafka::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn record(offset: i64, value: &str) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 1000 + offset,
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![],
        }
    }

    fn batch(base: i64, n: i64, compression: Compression) -> BytesMut {
        let records: Vec<Record> = (0..n)
            .map(|i| record(base + i, &format!("v{}", base + i)))
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf
    }

    #[test]
    fn decodes_complete_batches_and_ignores_a_cut_one() {
        let mut all = batch(10, 3, Compression::None);
        all.extend_from_slice(&batch(13, 2, Compression::Gzip));
        let third = batch(15, 4, Compression::None);
        all.extend_from_slice(&third[..third.len() - 5]);
        let (recs, next, truncated) = decode_batches(&all.freeze()).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![10, 11, 12, 13, 14]
        );
        assert_eq!(recs[4].value.as_deref(), Some(&b"v14"[..]));
        assert_eq!(next, Some(15));
        assert!(!truncated);

        let cut = batch(0, 2, Compression::None);
        let (recs, next, truncated) = decode_batches(&cut.freeze().slice(0..20)).unwrap();
        assert!(recs.is_empty());
        assert_eq!(next, None);
        assert!(truncated);
        assert!(!decode_batches(&Bytes::new()).unwrap().2);
    }
}
