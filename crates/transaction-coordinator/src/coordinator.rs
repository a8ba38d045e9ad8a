//! What each transaction request does, hosted per `__transaction_state` partition: an id
//! lives in partition `partition_for(transactional_id)` and is served here only while this
//! node leads that partition (its leader epoch is the coordinator epoch markers carry).
//! Gaining a partition loads its ids from the log and finishes the transactions it left in
//! PrepareCommit / PrepareAbort; losing it drops them (their records stay for the next
//! leader). Every change is written to the log, and only once durable made current.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proto_kafka::ResponseError;
use strom_group_coordinator::partition_for;
use strom_group_coordinator::writer::storage_error;
use strom_metadata::metadata_log::encode_internal_batch;
use strom_metadata::MetadataImage;
use tracing::{info, warn};

use crate::loader::load_transactions;
use crate::ports::{PartitionVerifier, PortFuture, Ports};
use crate::records;
use crate::state::{
    init_new, InitOutcome, TopicPartition, TransactionVersion, Transition, TxnMetadata, TxnResult,
    TxnState, Verified,
};
use crate::{TxnConfig, TRANSACTION_STATE_TOPIC};

/// Pause between rounds of markers that failed with a retriable error.
const MARKER_RETRY_BACKOFF_MS: u64 = 100;

/// One hosted partition of `__transaction_state`.
enum Shard {
    Loading,
    Active {
        coordinator_epoch: i32,
        ids: HashMap<String, TxnMetadata>,
    },
}

#[derive(Default)]
struct Hosted {
    partition_count: i32,
    shards: HashMap<i32, Shard>,
    /// Ids whose markers a task is sending, with the coordinator epoch it sends them at: one
    /// task per transaction and epoch.
    sending: HashSet<(String, i32)>,
}

/// ListTransactions v2's filter (KIP-1152): a regular expression the whole transactional id
/// must match, as Java's `Matcher.matches`; INVALID_REGULAR_EXPRESSION when it does not
/// compile. Patterns are capped in size so a client cannot make the broker build a huge
/// automaton.
pub fn transactional_id_matcher(pattern: &str) -> Result<regex::Regex, ResponseError> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|_| ResponseError::InvalidRegularExpression)
}

/// One line of ListTransactions (KIP-664).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

pub struct TransactionCoordinator {
    ports: Ports,
    config: TxnConfig,
    node_id: i32,
    hosted: Mutex<Hosted>,
}

/// Which partitions of `__transaction_state` `node_id` leads in `image`, with their leader
/// epochs.
pub fn led_partitions(image: &MetadataImage, node_id: i32) -> HashMap<i32, i32> {
    image
        .topic(TRANSACTION_STATE_TOPIC)
        .map(|t| {
            t.partitions
                .iter()
                .filter(|(_, p)| p.leader == node_id)
                .map(|(n, p)| (*n, p.leader_epoch))
                .collect()
        })
        .unwrap_or_default()
}

/// The node that coordinates `transactional_id` in `image` (FindCoordinator's answer).
pub fn coordinator_node(image: &MetadataImage, transactional_id: &str) -> Option<i32> {
    let topic = image.topic(TRANSACTION_STATE_TOPIC)?;
    let p = partition_for(transactional_id, topic.partitions.len() as i32);
    topic
        .partitions
        .get(&p)
        .map(|reg| reg.leader)
        .filter(|leader| *leader >= 0)
}

impl TransactionCoordinator {
    pub fn new(ports: Ports, config: TxnConfig, node_id: i32) -> Arc<TransactionCoordinator> {
        Arc::new(TransactionCoordinator {
            ports,
            config,
            node_id,
            hosted: Mutex::new(Hosted::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Hosted> {
        match self.hosted.lock() {
            Ok(g) => g,
            // A panic mid-change leaves the ids as they were at the panic; serving them beats
            // refusing them forever.
            Err(p) => p.into_inner(),
        }
    }

    /// Follows leadership in a new metadata image: loads partitions gained (and finishes
    /// their prepared transactions), drops those lost.
    pub async fn on_image(self: &Arc<Self>, image: &MetadataImage) {
        self.follow_image(image);
    }

    /// [`Self::on_image`] without a future, for a metadata publisher: loading reads the log
    /// synchronously, and the markers owed are sent by spawned tasks.
    pub fn follow_image(self: &Arc<Self>, image: &MetadataImage) {
        let led = led_partitions(image, self.node_id);
        let count = image
            .topic(TRANSACTION_STATE_TOPIC)
            .map_or(0, |t| t.partitions.len() as i32);
        let gained: Vec<(i32, i32)> = {
            let mut h = self.lock();
            h.partition_count = count;
            let lost: Vec<i32> = h
                .shards
                .iter()
                .filter(|(p, s)| match s {
                    Shard::Active {
                        coordinator_epoch, ..
                    } => led.get(p) != Some(coordinator_epoch),
                    Shard::Loading => !led.contains_key(p),
                })
                .map(|(p, _)| *p)
                .collect();
            for p in lost {
                h.shards.remove(&p);
                info!(
                    partition = p,
                    "{TRANSACTION_STATE_TOPIC} partition unloaded"
                );
            }
            let gained: Vec<(i32, i32)> = led
                .iter()
                .filter(|(p, _)| !h.shards.contains_key(p))
                .map(|(p, e)| (*p, *e))
                .collect();
            for (p, _) in &gained {
                h.shards.insert(*p, Shard::Loading);
            }
            gained
        };
        for (p, epoch) in gained {
            match load_transactions(self.ports.log.as_ref(), p) {
                Ok(ids) => {
                    let prepared: Vec<String> = ids
                        .iter()
                        .filter(|(_, m)| is_prepared(m))
                        .map(|(id, _)| id.clone())
                        .collect();
                    {
                        let mut h = self.lock();
                        // Lost again while loading: a later image unloaded it; stay unhosted.
                        if !matches!(h.shards.get(&p), Some(Shard::Loading)) {
                            continue;
                        }
                        h.shards.insert(
                            p,
                            Shard::Active {
                                coordinator_epoch: epoch,
                                ids,
                            },
                        );
                    }
                    for id in prepared {
                        self.spawn_markers(id);
                    }
                }
                Err(e) => {
                    warn!(partition = p, error = %e, "cannot load {TRANSACTION_STATE_TOPIC}");
                    self.lock().shards.remove(&p);
                }
            }
        }
    }

    /// FindCoordinator for a transactional id, on a cluster without `__transaction_state`:
    /// creates it with Kafka's settings (`transaction.state.log.*`). The caller answers
    /// COORDINATOR_NOT_AVAILABLE meanwhile, as Kafka does, and the client asks again.
    pub async fn ensure_state_topic(&self) -> Result<(), ResponseError> {
        if self
            .ports
            .cluster
            .image()
            .topic(TRANSACTION_STATE_TOPIC)
            .is_some()
        {
            return Ok(());
        }
        self.ports
            .cluster
            .create_transaction_state_topic(
                self.config.state_log_num_partitions,
                self.config.state_log_replication_factor,
                self.config.topic_configs(),
            )
            .await
            .map_err(|e| {
                warn!(error = %e, "cannot create {TRANSACTION_STATE_TOPIC}");
                ResponseError::CoordinatorNotAvailable
            })
    }

    /// The partition of `id` and its coordinator epoch, or the error telling the client to
    /// look elsewhere or wait.
    fn locate(&self, h: &Hosted, id: &str) -> Result<(i32, i32), ResponseError> {
        if h.partition_count <= 0 {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let p = partition_for(id, h.partition_count);
        match h.shards.get(&p) {
            Some(Shard::Active {
                coordinator_epoch, ..
            }) => Ok((p, *coordinator_epoch)),
            Some(Shard::Loading) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// Runs `f` on the id's metadata (None when unknown) under the lock.
    fn with_id<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut HashMap<String, TxnMetadata>, i32, i32) -> Result<T, ResponseError>,
    ) -> Result<T, ResponseError> {
        // Kafka answers an empty transactional id with INVALID_REQUEST in every API.
        if id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let mut h = self.lock();
        let (p, epoch) = self.locate(&h, id)?;
        match h.shards.get_mut(&p) {
            Some(Shard::Active { ids, .. }) => f(ids, p, epoch),
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    fn new_producer_id(&self) -> impl FnMut() -> Result<i64, ResponseError> + '_ {
        move || self.ports.cluster.next_producer_id()
    }

    /// Writes `t`'s record to partition `p` and waits until it is durable; then `t` becomes
    /// the id's state (or the id is forgotten, for a tombstone). A failed write leaves the id
    /// as it was.
    async fn write(&self, p: i32, epoch: i32, t: &Transition) -> Result<(), ResponseError> {
        let now_ms = self.ports.clock.now_ms();
        let result = self.append(p, t, now_ms).await;
        let mut h = self.lock();
        let Some(Shard::Active {
            coordinator_epoch,
            ids,
        }) = h.shards.get_mut(&p)
        else {
            return Err(ResponseError::NotCoordinator);
        };
        if *coordinator_epoch != epoch {
            return Err(ResponseError::NotCoordinator);
        }
        let id = &t.next.transactional_id;
        match result {
            Ok(()) if t.record.1.is_none() => {
                ids.remove(id);
                Ok(())
            }
            Ok(()) => {
                if let Some(m) = ids.get_mut(id) {
                    m.complete();
                } else {
                    ids.insert(id.clone(), t.next.clone());
                }
                Ok(())
            }
            Err(e) => {
                if let Some(m) = ids.get_mut(id) {
                    m.abandon();
                    if m.producer_epoch < 0 {
                        // A new id whose first write failed is not kept half-made.
                        ids.remove(id);
                    }
                }
                Err(e)
            }
        }
    }

    async fn append(&self, p: i32, t: &Transition, now_ms: i64) -> Result<(), ResponseError> {
        let (id, value) = &t.record;
        let key = records::encode_key(id).map_err(|_| ResponseError::InvalidRequest)?;
        let value = value
            .as_ref()
            .map(|v| {
                records::encode_value(
                    v,
                    records::value_version_for(self.config.transaction_version_level),
                )
            })
            .transpose()
            .map_err(|_| ResponseError::UnknownServerError)?;
        let batch = encode_internal_batch([(Some(key), value)], now_ms)
            .map_err(|_| ResponseError::UnknownServerError)?;
        let started = self
            .ports
            .log
            .start_append(p, batch, false, now_ms)
            .map_err(|e| storage_error(e, ResponseError::UnknownServerError))?;
        // The transition is applied by the caller only after this: once durable, whether the
        // log knew the record's offset before (a local log) or only now (shared storage).
        started
            .durable
            .await
            .map(|_| ())
            .map_err(|e| storage_error(e, ResponseError::UnknownServerError))
    }

    /// InitProducerId with a transactional id: its producer id and epoch.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        client_transaction_version: TransactionVersion,
    ) -> Result<(i64, i16), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let now_ms = self.ports.clock.now_ms();
        let max = self.config.transaction_max_timeout_ms;
        let (p, epoch, outcome) = self.with_id(transactional_id, |ids, p, epoch| {
            let mut new_pid = self.new_producer_id();
            let outcome = match ids.get(transactional_id) {
                None => {
                    let (mut fresh, t) = init_new(
                        transactional_id,
                        timeout_ms,
                        max,
                        client_transaction_version,
                        now_ms,
                        &mut new_pid,
                    )?;
                    fresh.begin(&t);
                    ids.insert(transactional_id.to_string(), fresh);
                    InitOutcome::Ready {
                        producer_id: t.next.producer_id,
                        producer_epoch: t.next.producer_epoch,
                        transition: Some(t),
                    }
                }
                Some(m) => {
                    let outcome = m.init_producer_id(
                        timeout_ms,
                        max,
                        expected,
                        client_transaction_version,
                        epoch,
                        now_ms,
                        &mut new_pid,
                    )?;
                    let m = ids
                        .get_mut(transactional_id)
                        .ok_or(ResponseError::UnknownServerError)?;
                    match &outcome {
                        InitOutcome::Ready {
                            transition: Some(t),
                            ..
                        }
                        | InitOutcome::AbortFirst(t) => m.begin(t),
                        InitOutcome::Ready { .. } => {}
                    }
                    outcome
                }
            };
            Ok((p, epoch, outcome))
        })?;
        match outcome {
            InitOutcome::Ready {
                producer_id,
                producer_epoch,
                transition,
            } => {
                if let Some(t) = transition {
                    self.write(p, epoch, &t).await?;
                }
                Ok((producer_id, producer_epoch))
            }
            InitOutcome::AbortFirst(t) => {
                self.write(p, epoch, &t).await?;
                self.spawn_markers(transactional_id.to_string());
                Err(ResponseError::ConcurrentTransactions)
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn through [`Self::add_offsets`]).
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<(), ResponseError> {
        let now_ms = self.ports.clock.now_ms();
        let planned = self.with_id(transactional_id, |ids, p, epoch| {
            let m = ids
                .get_mut(transactional_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            let t = m.add_partitions(producer_id, producer_epoch, partitions, now_ms)?;
            if let Some(t) = &t {
                m.begin(t);
            }
            Ok(t.map(|t| (p, epoch, t)))
        })?;
        match planned {
            Some((p, epoch, t)) => self.write(p, epoch, &t).await,
            None => Ok(()),
        }
    }

    /// AddOffsetsToTxn: the group's partition of `__consumer_offsets` joins the transaction,
    /// so its offsets get the transaction's marker.
    pub async fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group_id: &str,
        offsets_topic_partitions: i32,
    ) -> Result<(), ResponseError> {
        let tp = (
            strom_group_coordinator::OFFSETS_TOPIC.to_string(),
            partition_for(group_id, offsets_topic_partitions),
        );
        self.add_partitions(transactional_id, producer_id, producer_epoch, &[tp])
            .await
    }

    /// The verify-only AddPartitionsToTxn of KIP-890 part 1.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<Verified, ResponseError> {
        self.with_id(transactional_id, |ids, _, _| {
            ids.get(transactional_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?
                .verify_partitions(producer_id, producer_epoch, partitions)
        })
    }

    /// EndTxn: answered once the PrepareCommit / PrepareAbort is durable; the markers and the
    /// completion follow. Returns the producer id and epoch the producer continues with
    /// (bumped under transaction version 2).
    pub async fn end_txn(
        self: &Arc<Self>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        result: TxnResult,
    ) -> Result<(i64, i16), ResponseError> {
        self.end_txn_as(transactional_id, producer_id, producer_epoch, result, 0)
            .await
    }

    /// [`Self::end_txn`] from a client of `client_transaction_version` (EndTxn v5+: 2, whose
    /// every end bumps the epoch).
    pub async fn end_txn_as(
        self: &Arc<Self>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        result: TxnResult,
        client_transaction_version: TransactionVersion,
    ) -> Result<(i64, i16), ResponseError> {
        let now_ms = self.ports.clock.now_ms();
        let planned = self.with_id(transactional_id, |ids, p, epoch| {
            let m = ids
                .get_mut(transactional_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            let mut new_pid = self.new_producer_id();
            // A producer whose InitProducerId already named version 2 stays at it.
            let version = client_transaction_version.max(m.client_transaction_version);
            let t = m.end_txn_as(
                version,
                producer_id,
                producer_epoch,
                result,
                epoch,
                now_ms,
                &mut new_pid,
            )?;
            if let Some(t) = &t {
                m.begin(t);
            }
            Ok((p, epoch, t, (m.producer_id, m.producer_epoch)))
        })?;
        match planned {
            (p, epoch, Some(t), _) => {
                self.write(p, epoch, &t).await?;
                self.spawn_markers(transactional_id.to_string());
                let next = &t.next;
                Ok(if next.next_producer_id >= 0 {
                    (next.next_producer_id, 0)
                } else {
                    (next.producer_id, next.producer_epoch)
                })
            }
            (_, _, None, current) => Ok(current),
        }
    }

    fn spawn_markers(self: &Arc<Self>, transactional_id: String) {
        let key = {
            let mut h = self.lock();
            let Ok((_, epoch)) = self.locate(&h, &transactional_id) else {
                return;
            };
            let key = (transactional_id.clone(), epoch);
            if !h.sending.insert(key.clone()) {
                return;
            }
            key
        };
        let me = self.clone();
        // A publisher may run outside the runtime (start-up); without one the markers wait
        // for the next load or the timers.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            warn!(transactional_id = %transactional_id, "no runtime to send markers on");
            self.lock().sending.remove(&key);
            return;
        };
        rt.spawn(async move {
            if let Err(e) = me.send_markers(&transactional_id).await {
                warn!(transactional_id = %transactional_id, error = ?e, "transaction not completed here");
            }
            me.lock().sending.remove(&key);
        });
    }

    /// Runs the coordinator's periodic work until the task is dropped: aborting timed-out
    /// transactions and expiring idle ids, at Kafka's two intervals.
    pub async fn run_timers(self: Arc<Self>) {
        let every = |ms: i64| Duration::from_millis(u64::try_from(ms.max(1)).unwrap_or(1));
        let mut abort = tokio::time::interval(every(self.config.abort_timed_out_interval_ms));
        let mut expire = tokio::time::interval(every(self.config.remove_expired_interval_ms));
        abort.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = abort.tick() => {
                    self.abort_timed_out().await;
                }
                _ = expire.tick() => {
                    self.expire_transactional_ids().await;
                }
            }
        }
    }

    /// ListTransactions (KIP-664, with KIP-994's duration filter): the ids hosted here in
    /// `states` (all when empty) of `producer_ids` (all when empty), whose transaction has run
    /// at least `min_duration_ms` (when given). COORDINATOR_LOAD_IN_PROGRESS while a
    /// partition loads, as Kafka answers.
    pub fn list(
        &self,
        states: &[TxnState],
        producer_ids: &[i64],
        min_duration_ms: Option<i64>,
    ) -> Result<Vec<TxnListing>, ResponseError> {
        let now_ms = self.ports.clock.now_ms();
        let h = self.lock();
        let mut out = Vec::new();
        for shard in h.shards.values() {
            let ids = match shard {
                Shard::Loading => return Err(ResponseError::CoordinatorLoadInProgress),
                Shard::Active { ids, .. } => ids,
            };
            for m in ids.values() {
                let running_ms = if m.start_timestamp_ms >= 0 {
                    now_ms.saturating_sub(m.start_timestamp_ms)
                } else {
                    0
                };
                if (states.is_empty() || states.contains(&m.state))
                    && (producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
                    && min_duration_ms.is_none_or(|d| running_ms >= d)
                {
                    out.push(TxnListing {
                        transactional_id: m.transactional_id.clone(),
                        producer_id: m.producer_id,
                        state: m.state,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// Sends the markers a prepared transaction owes until every partition has taken them,
    /// then writes its completion.
    pub async fn send_markers(&self, transactional_id: &str) -> Result<(), ResponseError> {
        loop {
            let (p, epoch, markers) = self.with_id(transactional_id, |ids, p, epoch| {
                let m = ids
                    .get(transactional_id)
                    .ok_or(ResponseError::InvalidProducerIdMapping)?;
                if !is_prepared(m) || m.pending.is_some() {
                    return Err(ResponseError::InvalidTxnState);
                }
                Ok((p, epoch, m.pending_markers(epoch)))
            })?;
            let mut outstanding = markers;
            while !outstanding.is_empty() {
                let results = self.ports.markers.write_markers(outstanding.clone()).await;
                let mut retry = Vec::new();
                for (marker, r) in outstanding.into_iter().zip(
                    results
                        .into_iter()
                        .chain(std::iter::repeat(Err(ResponseError::UnknownServerError))),
                ) {
                    match r {
                        Ok(()) => {}
                        // A deleted partition needs no marker, as in Kafka.
                        Err(ResponseError::UnknownTopicOrPartition) => {}
                        Err(ResponseError::NotCoordinator)
                        | Err(ResponseError::InvalidProducerEpoch)
                        | Err(ResponseError::TransactionCoordinatorFenced) => {
                            // A newer coordinator owns the transaction now.
                            return Err(ResponseError::NotCoordinator);
                        }
                        Err(_) => retry.push(marker),
                    }
                }
                outstanding = retry;
                if !outstanding.is_empty() {
                    tokio::time::sleep(Duration::from_millis(MARKER_RETRY_BACKOFF_MS)).await;
                    // A coordinator that lost the partition meanwhile stops: the next leader
                    // sends the markers with its own epoch.
                    self.still_owed(transactional_id, p, epoch)?;
                }
            }
            let now_ms = self.ports.clock.now_ms();
            let t = self.with_id(transactional_id, |ids, _, _| {
                let m = ids
                    .get_mut(transactional_id)
                    .ok_or(ResponseError::InvalidProducerIdMapping)?;
                let t = m.complete_markers(now_ms)?;
                m.begin(&t);
                Ok(t)
            })?;
            match self.write(p, epoch, &t).await {
                Ok(()) => return Ok(()),
                Err(ResponseError::NotCoordinator) => return Err(ResponseError::NotCoordinator),
                // The completion is retried: the markers are idempotent.
                Err(e) => {
                    warn!(transactional_id, error = ?e, "writing a transaction's completion failed; retrying");
                    tokio::time::sleep(Duration::from_millis(MARKER_RETRY_BACKOFF_MS)).await;
                }
            }
        }
    }

    /// Whether this coordinator, at `epoch`, still owes the markers of `transactional_id`.
    fn still_owed(&self, transactional_id: &str, p: i32, epoch: i32) -> Result<(), ResponseError> {
        let (now_p, now_epoch) = self.with_id(transactional_id, |ids, p, epoch| {
            match ids.get(transactional_id) {
                Some(m) if is_prepared(m) => Ok((p, epoch)),
                _ => Err(ResponseError::InvalidTxnState),
            }
        })?;
        if (now_p, now_epoch) != (p, epoch) {
            return Err(ResponseError::NotCoordinator);
        }
        Ok(())
    }

    /// Aborts, with an epoch bump that fences their producers, the transactions older than
    /// their timeout (Kafka's `abortTimedOutTransactions`, every
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`). Returns their ids.
    pub async fn abort_timed_out(self: &Arc<Self>) -> Vec<String> {
        let now_ms = self.ports.clock.now_ms();
        let planned: Vec<(i32, i32, Transition)> = {
            let mut h = self.lock();
            let mut out = Vec::new();
            for (p, shard) in h.shards.iter_mut() {
                if let Shard::Active {
                    coordinator_epoch,
                    ids,
                } = shard
                {
                    for m in ids.values_mut().filter(|m| m.timed_out(now_ms)) {
                        if let Ok(t) = m.fence_and_abort(*coordinator_epoch, now_ms) {
                            m.begin(&t);
                            out.push((*p, *coordinator_epoch, t));
                        }
                    }
                }
            }
            out
        };
        let mut aborted = Vec::new();
        for (p, epoch, t) in planned {
            let id = t.next.transactional_id.clone();
            match self.write(p, epoch, &t).await {
                Ok(()) => {
                    info!(transactional_id = %id, "transaction timed out; aborting");
                    self.spawn_markers(id.clone());
                    aborted.push(id);
                }
                Err(e) => {
                    warn!(transactional_id = %id, error = ?e, "cannot abort a timed-out transaction")
                }
            }
        }
        aborted
    }

    /// Removes idle ids older than `transactional.id.expiration.ms`, with tombstones.
    pub async fn expire_transactional_ids(&self) -> Vec<String> {
        let now_ms = self.ports.clock.now_ms();
        let expiration_ms = self.config.transactional_id_expiration_ms;
        let planned: Vec<(i32, i32, Transition)> = {
            let mut h = self.lock();
            let mut out = Vec::new();
            for (p, shard) in h.shards.iter_mut() {
                if let Shard::Active {
                    coordinator_epoch,
                    ids,
                } = shard
                {
                    for m in ids.values_mut() {
                        if let Some(t) = m.expire(expiration_ms, now_ms) {
                            m.begin(&t);
                            out.push((*p, *coordinator_epoch, t));
                        }
                    }
                }
            }
            out
        };
        let mut expired = Vec::new();
        for (p, epoch, t) in planned {
            if self.write(p, epoch, &t).await.is_ok() {
                expired.push(t.next.transactional_id.clone());
            }
        }
        expired
    }

    /// The id's state, for DescribeTransactions and tests.
    pub fn describe(&self, transactional_id: &str) -> Result<Option<TxnMetadata>, ResponseError> {
        self.with_id(transactional_id, |ids, _, _| {
            Ok(ids.get(transactional_id).cloned())
        })
    }

    /// The hosted partitions that are loaded.
    pub fn active_partitions(&self) -> BTreeSet<i32> {
        self.lock()
            .shards
            .iter()
            .filter(|(_, s)| matches!(s, Shard::Active { .. }))
            .map(|(p, _)| *p)
            .collect()
    }
}

/// In process, the leader's question is the coordinator's own answer.
pub struct LocalVerifier(pub Arc<TransactionCoordinator>);

impl PartitionVerifier for LocalVerifier {
    fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
        add: bool,
    ) -> PortFuture<Result<Verified, ResponseError>> {
        if !add {
            let answer = self.0.verify_partitions(
                transactional_id,
                producer_id,
                producer_epoch,
                &partitions,
            );
            return Box::pin(std::future::ready(answer));
        }
        let coordinator = self.0.clone();
        let transactional_id = transactional_id.to_string();
        Box::pin(async move {
            coordinator
                .add_partitions(&transactional_id, producer_id, producer_epoch, &partitions)
                .await?;
            Ok(partitions.into_iter().map(|tp| (tp, Ok(()))).collect())
        })
    }
}

fn is_prepared(m: &TxnMetadata) -> bool {
    matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
}

#[cfg(test)]
mod tests;
