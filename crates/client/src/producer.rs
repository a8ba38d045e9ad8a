//! A producer for one topic: records are partitioned (explicit partition,
//! murmur2 of the key, or sticky), gathered into one batch per partition
//! until `batch_size` bytes or `linger`, and sent to the partition leaders,
//! one request in flight per partition (so order is kept, retries
//! included) and up to `max_in_flight` requests overall.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proto_kafka::messages::produce_request::{PartitionProduceData, TopicProduceData};
use proto_kafka::messages::{ProduceRequest, TopicName};
use proto_kafka::protocol::StrBytes;
use proto_kafka::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::client::{Client, TopicMeta};
use crate::error::{Error, KafkaCode, Result};
use crate::partitioner::{partition_for_key, StickyPartitioner};

#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// 0, 1 or -1 (all).
    pub acks: i16,
    pub compression: Compression,
    /// A partition's batch is sent once it holds this many bytes (estimated,
    /// uncompressed).
    pub batch_size: usize,
    /// ... or once its first record waited this long.
    pub linger: Duration,
    /// Produce requests in flight at once, all brokers together.
    pub max_in_flight: usize,
    /// Bytes buffered (not yet acknowledged) before `send` waits.
    pub buffer_bytes: usize,
    /// Time a batch may take, retries included, before it fails.
    pub delivery_timeout: Duration,
    pub retry_backoff: Duration,
    /// Create the topic if the broker auto-creates topics.
    pub allow_auto_create: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: -1,
            compression: Compression::None,
            batch_size: 16 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight: 5,
            buffer_bytes: 32 * 1024 * 1024,
            delivery_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            allow_auto_create: true,
        }
    }
}

/// A record to produce.
#[derive(Clone, Debug, Default)]
pub struct ProduceRecord {
    /// `None`: by key, or sticky when there is no key.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch; `None`: now.
    pub timestamp: Option<i64>,
}

impl ProduceRecord {
    /// Payload bytes (key + value + headers), the "MB" of rate lines.
    pub fn payload_len(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }

    /// The estimated size in a v2 batch.
    fn estimated_size(&self) -> usize {
        self.payload_len() + 21 + self.headers.len() * 10
    }
}

/// Counters of a producer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Records handed to `send`.
    pub queued: u64,
    /// Records acknowledged (with acks=0: written to the socket).
    pub delivered: u64,
    /// Payload bytes of delivered records.
    pub delivered_bytes: u64,
    /// Records that failed for good.
    pub failed: u64,
    /// Produce requests sent.
    pub requests: u64,
}

struct Batch {
    partition: i32,
    records: Vec<(ProduceRecord, i64)>,
    estimated: usize,
    payload: usize,
    /// When the first record was queued: linger and delivery timeout.
    created: Instant,
    /// Not sent again before this (retry backoff).
    not_before: Instant,
    attempts: u32,
}

impl Batch {
    fn new(partition: i32) -> Batch {
        Batch {
            partition,
            records: Vec::new(),
            estimated: 61,
            payload: 0,
            created: Instant::now(),
            not_before: Instant::now(),
            attempts: 0,
        }
    }
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<Batch>,
    sealed: VecDeque<Batch>,
    in_flight: bool,
}

struct Outcome {
    leader: i32,
    batches: Vec<Batch>,
    /// Request-level failure, or per-partition (error code, message).
    result: Result<HashMap<i32, (i16, Option<String>)>>,
}

pub struct Producer {
    client: Arc<Client>,
    config: ProducerConfig,
    topic: TopicMeta,
    queues: Vec<PartitionQueue>,
    sticky: StickyPartitioner,
    in_flight: JoinSet<Outcome>,
    buffered: usize,
    stats: ProducerStats,
    error: Option<Error>,
    /// The last retriable error, for the message of a delivery timeout.
    last_error: Option<String>,
    refresh_metadata: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn encode_batch(batch: &Batch, compression: Compression) -> Result<Bytes> {
    let records: Vec<Record> = batch
        .records
        .iter()
        .enumerate()
        .map(|(i, (r, ts))| Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: *ts,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::with_capacity(batch.estimated);
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| Error::Other(format!("cannot encode a record batch: {e}")))?;
    Ok(buf.freeze())
}

impl Producer {
    /// A producer for `topic`; waits for the topic's metadata (creating it
    /// if the broker auto-creates topics and `allow_auto_create`).
    pub async fn new(client: Arc<Client>, topic: &str, config: ProducerConfig) -> Result<Producer> {
        let meta = client
            .topic_metadata(topic, config.allow_auto_create)
            .await?;
        let n = meta.partitions.len();
        Ok(Producer {
            sticky: StickyPartitioner::new(config.batch_size),
            client,
            topic: meta,
            queues: (0..n).map(|_| PartitionQueue::default()).collect(),
            in_flight: JoinSet::new(),
            buffered: 0,
            stats: ProducerStats::default(),
            error: None,
            last_error: None,
            refresh_metadata: false,
            config,
        })
    }

    pub fn stats(&self) -> ProducerStats {
        self.stats
    }

    pub fn partitions(&self) -> i32 {
        self.queues.len() as i32
    }

    pub fn topic(&self) -> &TopicMeta {
        &self.topic
    }

    /// Queues a record, sending batches as they fill. Fails once a batch
    /// failed for good (the first such error).
    pub async fn send(&mut self, record: ProduceRecord) -> Result<()> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let partitions = self.partitions();
        let size = record.estimated_size();
        let partition = match (record.partition, &record.key) {
            (Some(p), _) => {
                if p < 0 || p >= partitions {
                    return Err(Error::Other(format!(
                        "partition {p} does not exist: topic {} has {partitions} partition{}",
                        self.topic.name,
                        if partitions == 1 { "" } else { "s" }
                    )));
                }
                p
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                let available: Vec<i32> = self
                    .topic
                    .partitions
                    .iter()
                    .filter(|p| p.leader >= 0 && p.partition < partitions)
                    .map(|p| p.partition)
                    .collect();
                self.sticky.partition(partitions, &available, size)
            }
        };
        let ts = record.timestamp.unwrap_or_else(now_ms);
        let batch_size = self.config.batch_size;
        let Some(q) = self.queues.get_mut(partition as usize) else {
            return Err(Error::Other(format!(
                "no partition {partition} in {}",
                self.topic.name
            )));
        };
        let open = q.open.get_or_insert_with(|| Batch::new(partition));
        if !open.records.is_empty() && open.estimated + size > batch_size {
            if let Some(full) = q.open.take() {
                q.sealed.push_back(full);
            }
        }
        let open = q.open.get_or_insert_with(|| Batch::new(partition));
        open.estimated += size;
        open.payload += record.payload_len();
        open.records.push((record, ts));
        if open.estimated >= batch_size {
            if let Some(full) = q.open.take() {
                q.sealed.push_back(full);
            }
        }
        self.buffered += size;
        self.stats.queued += 1;
        self.pump(false).await
    }

    /// Sends what is due (full batches, batches past linger), reaps finished
    /// requests, and waits while too much is buffered. Call it now and then
    /// when no records arrive, so that lingering batches go out.
    pub async fn poll(&mut self) -> Result<()> {
        self.pump(false).await
    }

    /// Sends everything and waits for every acknowledgement.
    pub async fn flush(&mut self) -> Result<()> {
        self.pump(true).await?;
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    async fn pump(&mut self, flush: bool) -> Result<()> {
        loop {
            while let Some(done) = self.in_flight.try_join_next() {
                self.complete(done)?;
            }
            if self.refresh_metadata {
                self.refresh().await;
            }
            self.launch(flush);
            let pending = self
                .queues
                .iter()
                .any(|q| q.open.is_some() || !q.sealed.is_empty());
            let must_wait = if flush {
                !self.in_flight.is_empty() || pending
            } else {
                self.buffered > self.config.buffer_bytes && !self.in_flight.is_empty()
            };
            if self.error.is_some() && flush {
                // Wait for what is in flight, drop the rest.
                while let Some(done) = self.in_flight.join_next().await {
                    self.complete(done)?;
                }
                return Ok(());
            }
            if !must_wait {
                return Ok(());
            }
            match self.in_flight.join_next().await {
                Some(done) => self.complete(done)?,
                None => {
                    // Nothing in flight but batches wait: their leader is
                    // unknown or they are backing off.
                    self.expire_unsent();
                    tokio::time::sleep(self.config.retry_backoff).await;
                    self.refresh_metadata = true;
                }
            }
        }
    }

    /// Fails the queued batches older than the delivery timeout (their
    /// leader could not be reached).
    fn expire_unsent(&mut self) {
        let timeout = self.config.delivery_timeout;
        for (p, q) in self.queues.iter_mut().enumerate() {
            if q.in_flight {
                continue;
            }
            let mut expired = Vec::new();
            while q
                .sealed
                .front()
                .is_some_and(|b| b.created.elapsed() >= timeout)
            {
                expired.extend(q.sealed.pop_front());
            }
            if q.sealed.is_empty()
                && q.open
                    .as_ref()
                    .is_some_and(|b| b.created.elapsed() >= timeout)
            {
                expired.extend(q.open.take());
            }
            for b in expired {
                self.stats.failed += b.records.len() as u64;
                self.buffered = self.buffered.saturating_sub(b.estimated);
                if self.error.is_none() {
                    self.error = Some(Error::Other(format!(
                        "produce to {}[{p}]: not delivered within {} ms{}",
                        self.topic.name,
                        timeout.as_millis(),
                        self.last_error
                            .as_deref()
                            .map(|e| format!(" (last error: {e})"))
                            .unwrap_or_default()
                    )));
                }
            }
        }
    }

    async fn refresh(&mut self) {
        match self.client.topic_metadata(&self.topic.name, false).await {
            Ok(meta) => {
                if meta.partitions.len() > self.queues.len() {
                    self.queues
                        .resize_with(meta.partitions.len(), PartitionQueue::default);
                }
                self.topic = meta;
                self.refresh_metadata = false;
            }
            Err(e) => {
                tracing::debug!(error = %e, "metadata refresh failed");
                self.last_error = Some(e.to_string());
            }
        }
    }

    fn complete(
        &mut self,
        done: std::result::Result<Outcome, tokio::task::JoinError>,
    ) -> Result<()> {
        let outcome = done.map_err(|e| Error::Other(format!("a produce task failed: {e}")))?;
        let leader = outcome.leader;
        for mut batch in outcome.batches {
            let p = batch.partition;
            let (code, message) = match &outcome.result {
                Ok(results) => results.get(&p).cloned().unwrap_or((
                    KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                    Some("no answer for the partition".into()),
                )),
                Err(e) => (-1, Some(e.to_string())),
            };
            if let Some(q) = self.queues.get_mut(p as usize) {
                q.in_flight = false;
            }
            if code == 0 {
                self.stats.delivered += batch.records.len() as u64;
                self.stats.delivered_bytes += batch.payload as u64;
                self.buffered = self.buffered.saturating_sub(batch.estimated);
                continue;
            }
            let request_failed = outcome.result.is_err();
            let retriable = if request_failed {
                outcome
                    .result
                    .as_ref()
                    .err()
                    .is_some_and(Error::is_retriable)
            } else {
                KafkaCode(code).is_retriable() || KafkaCode(code).needs_metadata_refresh()
            };
            let expired = batch.created.elapsed() >= self.config.delivery_timeout;
            if retriable && !expired {
                tracing::debug!(
                    partition = p,
                    leader,
                    code,
                    attempts = batch.attempts,
                    "retrying a batch"
                );
                self.refresh_metadata = true;
                batch.not_before = Instant::now() + self.config.retry_backoff;
                self.last_error = Some(match &outcome.result {
                    Err(e) => e.to_string(),
                    Ok(_) => KafkaCode(code).name(),
                });
                if let Some(q) = self.queues.get_mut(p as usize) {
                    q.sealed.push_front(batch);
                }
                continue;
            }
            self.stats.failed += batch.records.len() as u64;
            self.buffered = self.buffered.saturating_sub(batch.estimated);
            if self.error.is_none() {
                let context = format!("produce to {}[{p}]", self.topic.name);
                self.error = Some(match &outcome.result {
                    Err(e) => Error::Other(format!("{context}: {e}")),
                    Ok(_) => Error::kafka(context, code, message),
                });
            }
        }
        Ok(())
    }

    /// Starts requests for the batches that are due.
    fn launch(&mut self, flush: bool) {
        if self.error.is_some() {
            return;
        }
        let now = Instant::now();
        let linger = self.config.linger;
        let mut by_leader: HashMap<i32, Vec<Batch>> = HashMap::new();
        for (i, q) in self.queues.iter_mut().enumerate() {
            if q.in_flight {
                continue;
            }
            let leader = match self.topic.partition(i as i32) {
                Some(m) if m.leader >= 0 => m.leader,
                _ => {
                    if q.open.is_some() || !q.sealed.is_empty() {
                        self.refresh_metadata = true;
                    }
                    continue;
                }
            };
            let batch = match q.sealed.front() {
                Some(b) if b.not_before <= now => q.sealed.pop_front(),
                Some(_) => None, // backing off
                None => match &q.open {
                    Some(b) if flush || now.duration_since(b.created) >= linger => q.open.take(),
                    _ => None,
                },
            };
            if let Some(b) = batch {
                q.in_flight = true;
                by_leader.entry(leader).or_default().push(b);
            }
        }
        for (leader, mut batches) in by_leader {
            if self.in_flight.len() >= self.config.max_in_flight.max(1) {
                // Put them back; they go with a later request.
                for b in batches.drain(..) {
                    if let Some(q) = self.queues.get_mut(b.partition as usize) {
                        q.in_flight = false;
                        q.sealed.push_front(b);
                    }
                }
                continue;
            }
            for b in batches.iter_mut() {
                b.attempts += 1;
            }
            self.stats.requests += 1;
            let client = Arc::clone(&self.client);
            let topic = self.topic.name.clone();
            let topic_id = self.topic.id;
            let acks = self.config.acks;
            let compression = self.config.compression;
            let timeout_ms =
                i32::try_from(self.client.request_timeout().as_millis()).unwrap_or(i32::MAX);
            self.in_flight.spawn(async move {
                let result = produce_request(
                    &client,
                    leader,
                    &topic,
                    topic_id,
                    acks,
                    timeout_ms,
                    compression,
                    &batches,
                )
                .await;
                Outcome {
                    leader,
                    batches,
                    result,
                }
            });
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn produce_request(
    client: &Client,
    leader: i32,
    topic: &str,
    topic_id: Uuid,
    acks: i16,
    timeout_ms: i32,
    compression: Compression,
    batches: &[Batch],
) -> Result<HashMap<i32, (i16, Option<String>)>> {
    let mut data = Vec::with_capacity(batches.len());
    for b in batches {
        let records = encode_batch(b, compression)?;
        data.push(
            PartitionProduceData::default()
                .with_index(b.partition)
                .with_records(Some(records)),
        );
    }
    let conn = client.broker(leader).await?;
    let cap = if topic_id.is_nil() { 12 } else { i16::MAX };
    let version = conn.version_capped::<ProduceRequest>(cap)?;
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
        return Ok(batches.iter().map(|b| (b.partition, (0, None))).collect());
    }
    let resp = conn.send(version, &req).await?;
    let mut out = HashMap::new();
    for t in &resp.responses {
        for p in &t.partition_responses {
            let mut message = p.error_message.as_ref().map(ToString::to_string);
            if message.is_none() {
                message = p.record_errors.first().and_then(|e| {
                    e.batch_index_error_message
                        .as_ref()
                        .map(ToString::to_string)
                });
            }
            out.insert(p.index, (p.error_code, message));
        }
    }
    Ok(out)
}
