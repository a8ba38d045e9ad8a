//! One-shot produce: records already split by partition go out as one batch
//! per partition, and each batch is answered with the offset of its first
//! record. The HTTP gateway needs those offsets for its answers, which the
//! streaming [`crate::Producer`] does not report.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use proto_kafka::messages::produce_request::{PartitionProduceData, TopicProduceData};
use proto_kafka::messages::{ProduceRequest, TopicName};
use proto_kafka::protocol::StrBytes;
use proto_kafka::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::client::Client;
use crate::error::{Error, KafkaCode, Result};
use crate::producer::ProduceRecord;

/// Attempts for a batch whose error is retriable (a leader change, say).
const ATTEMPTS: usize = 3;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Encodes records as one v2 batch (offset deltas from 0).
pub fn encode_records(records: &[ProduceRecord], compression: Compression) -> Result<Bytes> {
    let now = now_ms();
    let encoded: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: r.timestamp.unwrap_or(now),
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        encoded.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| Error::Other(format!("cannot encode a record batch: {e}")))?;
    Ok(buf.freeze())
}

impl Client {
    /// Produces each partition's records as one batch to its leader and
    /// returns, per partition in the order given, the base offset assigned
    /// (-1 with acks=0) or the error. Retriable errors are retried after a
    /// metadata refresh.
    pub async fn produce_batches(
        &self,
        topic: &str,
        batches: Vec<(i32, Vec<ProduceRecord>)>,
        acks: i16,
        compression: Compression,
    ) -> Result<Vec<(i32, Result<i64>)>> {
        let mut results: HashMap<i32, Result<i64>> = HashMap::new();
        let order: Vec<i32> = batches.iter().map(|(p, _)| *p).collect();
        let mut encoded: Vec<(i32, Bytes)> = Vec::with_capacity(batches.len());
        for (p, records) in &batches {
            encoded.push((*p, encode_records(records, compression)?));
        }
        let timeout_ms = i32::try_from(self.request_timeout().as_millis()).unwrap_or(i32::MAX);
        let mut todo = encoded;
        for attempt in 0..ATTEMPTS {
            if todo.is_empty() {
                break;
            }
            let meta = match self.cached_topic(topic) {
                Some(m) if attempt == 0 && m.is_ready() => m,
                _ => self.topic_metadata(topic, false).await?,
            };
            let mut by_leader: HashMap<i32, Vec<(i32, Bytes)>> = HashMap::new();
            for (p, bytes) in todo.drain(..) {
                match meta.partition(p) {
                    Some(pm) if pm.leader >= 0 => {
                        by_leader.entry(pm.leader).or_default().push((p, bytes))
                    }
                    Some(_) => {
                        results.insert(
                            p,
                            Err(Error::kafka(
                                format!("produce to {topic}[{p}]"),
                                KafkaCode::LEADER_NOT_AVAILABLE,
                                None,
                            )),
                        );
                    }
                    None => {
                        results.insert(
                            p,
                            Err(Error::kafka(
                                format!("produce to {topic}[{p}]"),
                                KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                                None,
                            )),
                        );
                    }
                }
            }
            let mut retry = Vec::new();
            for (leader, parts) in by_leader {
                let outcome = self
                    .produce_to_leader(leader, topic, meta.id, acks, timeout_ms, &parts)
                    .await;
                match outcome {
                    Ok(answers) => {
                        for (p, bytes) in parts {
                            let r = answers.get(&p).cloned().unwrap_or_else(|| {
                                Err(Error::Other(format!(
                                    "the broker did not answer for {topic}[{p}]"
                                )))
                            });
                            if let Err(e) = &r {
                                if e.is_retriable()
                                    || e.code()
                                        .is_some_and(|c| KafkaCode(c).needs_metadata_refresh())
                                {
                                    retry.push((p, bytes));
                                }
                            }
                            results.insert(p, r);
                        }
                    }
                    Err(e) => {
                        for (p, bytes) in parts {
                            if e.is_retriable() {
                                retry.push((p, bytes));
                            }
                            results.insert(p, Err(e.clone()));
                        }
                    }
                }
            }
            if !retry.is_empty() && attempt + 1 < ATTEMPTS {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            todo = retry;
        }
        Ok(order
            .into_iter()
            .map(|p| {
                let r = results
                    .remove(&p)
                    .unwrap_or_else(|| Err(Error::Other(format!("no answer for {topic}[{p}]"))));
                (p, r)
            })
            .collect())
    }

    async fn produce_to_leader(
        &self,
        leader: i32,
        topic: &str,
        topic_id: uuid::Uuid,
        acks: i16,
        timeout_ms: i32,
        parts: &[(i32, Bytes)],
    ) -> Result<HashMap<i32, Result<i64>>> {
        let conn = self.broker(leader).await?;
        let cap = if topic_id.is_nil() { 12 } else { i16::MAX };
        let version = conn.version_capped::<ProduceRequest>(cap)?;
        let data = parts
            .iter()
            .map(|(p, bytes)| {
                PartitionProduceData::default()
                    .with_index(*p)
                    .with_records(Some(bytes.clone()))
            })
            .collect();
        let mut td = TopicProduceData::default().with_partition_data(data);
        if version >= 13 {
            td.topic_id = topic_id;
        } else {
            td.name = TopicName(StrBytes::from_string(topic.to_string()));
        }
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![td]);
        if acks == 0 {
            conn.send_no_response(version, &req).await?;
            return Ok(parts.iter().map(|(p, _)| (*p, Ok(-1))).collect());
        }
        let resp = conn.send(version, &req).await?;
        let mut out = HashMap::new();
        for t in &resp.responses {
            for p in &t.partition_responses {
                let r = if p.error_code == 0 {
                    Ok(p.base_offset)
                } else {
                    let message = p
                        .error_message
                        .as_ref()
                        .map(ToString::to_string)
                        .or_else(|| {
                            p.record_errors.first().and_then(|e| {
                                e.batch_index_error_message
                                    .as_ref()
                                    .map(ToString::to_string)
                            })
                        });
                    Err(Error::kafka(
                        format!("produce to {topic}[{}]", p.index),
                        p.error_code,
                        message,
                    ))
                };
                out.insert(p.index, r);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::decode_batches;

    #[test]
    fn encoded_records_decode_with_their_keys_headers_and_timestamps() {
        let records = vec![
            ProduceRecord {
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"\x00\xff")),
                headers: vec![
                    ("h".into(), None),
                    ("g".into(), Some(Bytes::from_static(b"v"))),
                ],
                timestamp: Some(1234),
                ..Default::default()
            },
            ProduceRecord::default(),
        ];
        let bytes = encode_records(&records, Compression::None).unwrap();
        let (decoded, next, truncated) = decode_batches(&bytes).unwrap();
        assert!(!truncated);
        assert_eq!(next, Some(2));
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(decoded[0].value.as_deref(), Some(&b"\x00\xff"[..]));
        assert_eq!(decoded[0].timestamp, 1234);
        assert_eq!(decoded[0].headers.len(), 2);
        assert_eq!(decoded[0].headers[1].1.as_deref(), Some(&b"v"[..]));
        assert_eq!(
            (
                decoded[1].offset,
                decoded[1].key.clone(),
                decoded[1].value.clone()
            ),
            (1, None, None)
        );
    }
}
