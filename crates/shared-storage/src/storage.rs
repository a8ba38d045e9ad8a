//! The broker-wide part: the intake that gathers every led partition's batches into one
//! object per `linger` (several in flight: uploads overlap, commits keep their order), the sequencer's connection, the listener that follows other brokers'
//! commits, and the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::cache::RangeCache;
use crate::config::ObjectStoreConfig;
use crate::error::SharedStorageError;
use crate::partition::SharedPartition;
use crate::sequencer::{self, Committed, StagedAppend, StagedBatch, NOTIFY_CHANNEL};
use crate::shared::{connect, Inner, IntakeRequest};
use crate::store::Store;

/// Produce requests waiting for the intake; beyond this a producer waits to hand its batches
/// over (back-pressure rather than unbounded memory).
const INTAKE_QUEUE: usize = 1024;

/// The shared storage of one broker. Dropping it stops its intake and listener.
pub struct SharedStorage {
    inner: Arc<Inner>,
    partitions: Arc<Registry>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SharedStorage {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl SharedStorage {
    /// Connects to PostgreSQL (`pg_url`, never logged), migrates the tables and starts the
    /// intake and the listener on the current runtime.
    pub async fn start(
        pg_url: &str,
        config: ObjectStoreConfig,
        node_id: i32,
    ) -> Result<SharedStorage, SharedStorageError> {
        let store = Store::new(&config)?;
        let mut client = connect(pg_url).await?;
        crate::schema::migrate(&mut client).await?;
        let (intake, rx) = mpsc::channel(INTAKE_QUEUE);
        let inner = Arc::new(Inner {
            cache: RangeCache::new(config.cache_max_bytes),
            config,
            store,
            node_id,
            pg_url: pg_url.to_string(),
            reader: tokio::sync::Mutex::new(Some(client)),
            intake,
            get_requests: std::sync::atomic::AtomicU64::new(0),
            commits_tried: AtomicU64::new(0),
            fail_commit_number: AtomicU64::new(0),
        });
        let partitions = Arc::new(Registry::default());
        let intake_task = tokio::spawn(run_intake(
            Arc::downgrade(&inner),
            Arc::clone(&partitions),
            rx,
        ));
        let listener_task = tokio::spawn(run_listener(
            Arc::downgrade(&inner),
            Arc::clone(&partitions),
        ));
        info!(
            node_id,
            bucket = %inner.config.bucket,
            prefix = %inner.config.prefix,
            "shared storage started"
        );
        Ok(SharedStorage {
            inner,
            partitions,
            tasks: vec![intake_task, listener_task],
        })
    }

    /// Opens (creating its row on first use) a partition this broker leads or serves, claiming
    /// `leader_epoch` (an older claim is kept), and loads its index.
    pub async fn open_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
    ) -> Result<Arc<SharedPartition>, SharedStorageError> {
        let log_start: i64 = self
            .inner
            .with_reader(|c| {
                Box::pin(async move {
                    let row = c
                        .query_one(
                            "INSERT INTO shared_storage_partitions
                                 (topic_id, partition, next_offset, log_start_offset, leader_epoch)
                             VALUES ($1, $2, 0, 0, $3)
                             ON CONFLICT (topic_id, partition) DO UPDATE
                                 SET leader_epoch = GREATEST(shared_storage_partitions.leader_epoch,
                                                             EXCLUDED.leader_epoch)
                             RETURNING log_start_offset",
                            &[&topic_id, &partition, &leader_epoch],
                        )
                        .await?;
                    Ok(row.try_get(0)?)
                })
            })
            .await?;
        let p = Arc::new(SharedPartition::new(
            Arc::clone(&self.inner),
            topic_id,
            partition,
            leader_epoch,
            log_start,
        ));
        p.catch_up().await?;
        self.partitions
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((topic_id, partition), Arc::downgrade(&p));
        Ok(p)
    }

    /// Claims `leader_epoch` for a partition this broker now leads (a newer claim is kept):
    /// an older leader's commits are fenced from now on, not only from this broker's first
    /// commit.
    pub async fn claim_leader_epoch(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
    ) -> Result<(), SharedStorageError> {
        self.inner
            .with_reader(|c| {
                Box::pin(async move {
                    c.execute(
                        "UPDATE shared_storage_partitions
                            SET leader_epoch = GREATEST(leader_epoch, $3)
                          WHERE topic_id = $1 AND partition = $2",
                        &[&topic_id, &partition, &leader_epoch],
                    )
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Objects recorded for garbage collection (their commit failed).
    pub async fn orphan_objects(&self) -> Result<Vec<String>, SharedStorageError> {
        self.inner
            .with_reader(|c| {
                Box::pin(async move {
                    let rows = c
                        .query(
                            "SELECT object_key FROM shared_storage_orphan_objects ORDER BY object_key",
                            &[],
                        )
                        .await?;
                    rows.iter()
                        .map(|r| r.try_get(0).map_err(Into::into))
                        .collect()
                })
            })
            .await
    }

    /// Deletes the recorded orphaned objects older than `min_age` that no index row points
    /// into, and their records; returns how many objects were deleted. The age leaves time
    /// for a commit whose outcome was unknown to have become visible.
    pub async fn collect_orphans(&self, min_age: Duration) -> Result<usize, SharedStorageError> {
        let min_age_ms = i64::try_from(min_age.as_millis()).unwrap_or(i64::MAX);
        let candidates: Vec<(String, bool)> = self
            .inner
            .with_reader(|c| {
                Box::pin(async move {
                    let rows = c
                        .query(
                            "SELECT o.object_key,
                                    EXISTS (SELECT 1 FROM shared_storage_batches b
                                             WHERE b.object_key = o.object_key)
                               FROM shared_storage_orphan_objects o
                              WHERE o.recorded_at < now() - make_interval(secs => $1::bigint / 1000.0)
                              ORDER BY o.object_key",
                            &[&min_age_ms],
                        )
                        .await?;
                    rows.iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                        .collect()
                })
            })
            .await?;
        let mut deleted = 0;
        for (key, referenced) in candidates {
            if referenced {
                warn!(object = %key, "an object recorded as orphaned is referenced; kept");
            } else {
                self.inner.store.delete(&key).await?;
                deleted += 1;
            }
            let k = key.clone();
            self.inner
                .with_reader(|c| {
                    Box::pin(async move {
                        c.execute(
                            "DELETE FROM shared_storage_orphan_objects WHERE object_key = $1",
                            &[&k],
                        )
                        .await?;
                        Ok(())
                    })
                })
                .await?;
            info!(object = %key, referenced, "orphaned object record collected");
        }
        Ok(deleted)
    }

    /// Test faults in this broker's PUTs: see `Store::inject_put_faults`.
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_put_faults(&self, fail_number: u64, delay_ms: u64) {
        self.inner.store.inject_put_faults(fail_number, delay_ms);
    }

    /// Makes this broker's commit number `fail_number` (from 1, counting every commit so far;
    /// 0: none) fail before it reaches PostgreSQL.
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_commit_failure(&self, fail_number: u64) {
        self.inner
            .fail_commit_number
            .store(fail_number, Ordering::Relaxed);
    }

    /// The most PUTs this broker had under way at once.
    #[cfg(any(test, feature = "testing"))]
    pub fn most_puts_at_once(&self) -> u64 {
        self.inner.store.most_puts_at_once()
    }

    pub fn cache_size_bytes(&self) -> usize {
        self.inner.cache.size_bytes()
    }
}

type PartitionKey = (Uuid, i32);

/// The partitions open on this broker, which the intake and the listener update.
#[derive(Default)]
struct Registry {
    map: Mutex<HashMap<PartitionKey, Weak<SharedPartition>>>,
}

impl Registry {
    fn get(&self, key: &PartitionKey) -> Option<Arc<SharedPartition>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .and_then(Weak::upgrade)
    }

    fn all(&self) -> Vec<Arc<SharedPartition>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

/// The broker's wall clock, as the intake stamps LogAppendTime with it.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One gathered object on its way: its PUT runs in its own task while earlier objects are
/// committed.
struct Sealed {
    /// Sealing order, from 1: commits follow it.
    number: u64,
    key: String,
    object: Bytes,
    appends: Vec<StagedAppend>,
    requests: Vec<IntakeRequest>,
    /// The PUT under way, then its outcome (a task's handle is awaited once).
    put: Option<JoinHandle<Result<(), SharedStorageError>>>,
    put_result: Option<Result<(), SharedStorageError>>,
    /// Held until the object is committed or failed: `produce.max.in.flight.objects`.
    _permit: OwnedSemaphorePermit,
}

/// Gathers requests for up to `linger` or `max.bytes` into objects and starts each one's PUT
/// at once, with up to `object.store.produce.max.in.flight.objects` objects between sealing
/// and commit; `run_committer` commits them in sealing order. Requests are gathered in the
/// order they were handed over, so a partition's appends stay in request order across
/// objects, which idempotent producers with several requests in flight rely on.
async fn run_intake(
    inner: Weak<Inner>,
    partitions: Arc<Registry>,
    mut rx: mpsc::Receiver<IntakeRequest>,
) {
    let in_flight = match inner.upgrade() {
        Some(i) => i.config.produce_max_in_flight_objects.max(1),
        None => return,
    };
    let permits = Arc::new(Semaphore::new(in_flight));
    // Bounded by the permits: at most `in_flight` objects are ever in this channel.
    let (sealed_tx, sealed_rx) = mpsc::unbounded_channel();
    let sealed_count = Arc::new(AtomicU64::new(0));
    let committer = tokio::spawn(run_committer(
        inner.clone(),
        partitions,
        sealed_rx,
        Arc::clone(&sealed_count),
    ));
    // The committer ends with the storage (its channel closes when this task does).
    let _committer = AbortOnDrop(committer);
    while let Some(first) = rx.recv().await {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + strong.config.linger();
        // Waiting for a permit is where the next object's requests gather meanwhile.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let mut size = first.records.len();
        let mut requests = vec![first];
        while size < strong.config.produce_max_bytes {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => {
                    size += r.records.len();
                    requests.push(r);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let number = sealed_count.load(Ordering::Acquire) + 1;
        let sealed = seal(&strong, number, requests, permit);
        // Counted before the committer can see it, so a failure it meets covers this one.
        sealed_count.store(number, Ordering::Release);
        if let Err(mpsc::error::SendError(s)) = sealed_tx.send(sealed) {
            s.abort_put();
            for r in s.requests {
                let _ = r.reply.send(Err(SharedStorageError::IntakeStopped));
            }
            return;
        }
    }
}

impl Sealed {
    fn put_finished(&self) -> bool {
        self.put_result.is_some() || self.put.as_ref().is_some_and(|h| h.is_finished())
    }

    async fn finish_put(&mut self) {
        if self.put_result.is_none() {
            self.put_result = Some(match self.put.take() {
                Some(h) => h.await.unwrap_or_else(|e| {
                    Err(SharedStorageError::ObjectStore(format!("PUT task: {e}")))
                }),
                None => Err(SharedStorageError::IntakeStopped),
            });
        }
    }

    fn abort_put(&self) {
        if let Some(h) = &self.put {
            h.abort();
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lays the requests out in one object (stamping LogAppendTime topics' batches with this
/// moment) and starts its PUT.
fn seal(
    inner: &Arc<Inner>,
    number: u64,
    requests: Vec<IntakeRequest>,
    permit: OwnedSemaphorePermit,
) -> Sealed {
    let now = now_ms();
    let key = inner.config.intake_key(inner.node_id, now);
    let mut object = BytesMut::with_capacity(requests.iter().map(|r| r.records.len()).sum());
    let mut appends = Vec::with_capacity(requests.len());
    let mut kept = Vec::with_capacity(requests.len());
    for r in requests {
        let base = object.len() as u64;
        object.extend_from_slice(&r.records);
        let mut batches: Vec<StagedBatch> = r
            .batches
            .iter()
            .map(|b| StagedBatch {
                byte_start: base + b.byte_start,
                ..b.clone()
            })
            .collect();
        if r.log_append_time {
            // The max timestamp and the timestamp-type bit are under the CRC: recomputed for
            // these batches only.
            let stamped = batches.iter_mut().try_for_each(|b| {
                let start = b.byte_start as usize;
                let end = start + b.byte_length as usize;
                b.max_timestamp_ms = now;
                match object.get_mut(start..end) {
                    Some(bytes) => strom_log::batch::set_log_append_time(bytes, now)
                        .map_err(|e| SharedStorageError::Corrupt(e.to_string())),
                    None => Err(SharedStorageError::Corrupt(
                        "batch beyond its request".into(),
                    )),
                }
            });
            if let Err(e) = stamped {
                object.truncate(base as usize);
                let _ = r.reply.send(Err(e));
                continue;
            }
        }
        appends.push(StagedAppend {
            topic_id: r.topic_id,
            partition: r.partition,
            leader_epoch: r.leader_epoch,
            batches,
            log_append_time_ms: r.log_append_time.then_some(now),
            coordinator: r.coordinator,
        });
        kept.push(r);
    }
    let requests = kept;
    let object = object.freeze();
    let store = inner.store.clone();
    let put = {
        let key = key.clone();
        let object = object.clone();
        tokio::spawn(async move { store.put(&key, object).await })
    };
    Sealed {
        number,
        key,
        object,
        appends,
        requests,
        put: Some(put),
        put_result: None,
        _permit: permit,
    }
}

/// Why an object behind a failed one is failed too: offsets are assigned at commit, so
/// committing it would let its batches pass the failed object's (a gap in an idempotent
/// producer's sequence, or a reordering of any producer's requests). The client retries
/// both, in order.
struct Failure {
    /// Objects sealed up to this number are failed with `error`.
    through: u64,
    /// The failed object's number and what became of it.
    object: u64,
    object_store: bool,
    message: String,
}

impl Failure {
    fn error(&self) -> SharedStorageError {
        let message = format!(
            "intake object {} before this one failed: {}",
            self.object, self.message
        );
        if self.object_store {
            SharedStorageError::ObjectStore(message)
        } else {
            SharedStorageError::Sequencer(message)
        }
    }
}

/// Commits sealed objects in sealing order on one PostgreSQL connection, each once its PUT
/// is done; objects whose PUTs are done by the time the connection is free are committed
/// together in one transaction (one WAL flush: the commit, not the PUT, is what bounds a
/// broker's produce rate). A failed PUT or commit fails every object sealed before the
/// failure was seen (they are behind it).
async fn run_committer(
    inner: Weak<Inner>,
    partitions: Arc<Registry>,
    mut sealed_rx: mpsc::UnboundedReceiver<Sealed>,
    sealed_count: Arc<AtomicU64>,
) {
    let mut sequencer: Option<Client> = None;
    // Objects PUT whose commit failed while PostgreSQL was away, recorded once it is back.
    let mut unrecorded_orphans: Vec<(String, u64, String)> = Vec::new();
    let mut failure: Option<Failure> = None;
    // Objects taken from the channel to look at their PUT, not yet committed.
    let mut looked_at: std::collections::VecDeque<Sealed> = Default::default();
    loop {
        let mut sealed = match looked_at.pop_front() {
            Some(s) => s,
            None => match sealed_rx.recv().await {
                Some(s) => s,
                None => return,
            },
        };
        let Some(inner) = inner.upgrade() else {
            sealed.abort_put();
            return;
        };
        let waited_for_put = std::time::Instant::now();
        sealed.finish_put().await;
        let put = sealed
            .put_result
            .take()
            .unwrap_or(Err(SharedStorageError::IntakeStopped));
        if let Some(f) = failure.as_ref().filter(|f| sealed.number <= f.through) {
            if put.is_ok() {
                unrecorded_orphans.push((
                    sealed.key.clone(),
                    sealed.object.len() as u64,
                    "an earlier object failed".into(),
                ));
            }
            for r in sealed.requests {
                let _ = r.reply.send(Err(f.error()));
            }
            continue;
        }
        failure = None;
        if let Err(e) = put {
            warn!(object = %sealed.key, error = %e, "intake PUT failed");
            failure = Some(Failure {
                through: sealed_count.load(Ordering::Acquire),
                object: sealed.number,
                object_store: true,
                message: e.to_string(),
            });
            for r in sealed.requests {
                let _ = r
                    .reply
                    .send(Err(SharedStorageError::ObjectStore(e.to_string())));
            }
            continue;
        }
        // The objects right behind whose PUTs are done go in the same transaction; the first
        // one not done (or failed) waits for the next turn.
        let mut group = vec![sealed];
        loop {
            let next = match looked_at.pop_front() {
                Some(s) => s,
                None => match sealed_rx.try_recv() {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let mut next = next;
            if !next.put_finished() {
                looked_at.push_front(next);
                break;
            }
            next.finish_put().await;
            if !matches!(next.put_result, Some(Ok(()))) {
                looked_at.push_front(next);
                break;
            }
            next.put_result = None;
            group.push(next);
        }
        let committing = std::time::Instant::now();
        let objects: Vec<(&str, &[StagedAppend])> = group
            .iter()
            .map(|g| (g.key.as_str(), g.appends.as_slice()))
            .collect();
        let committed = commit_on(&inner, &mut sequencer, &objects).await;
        drop(objects);
        // Where the time goes: waiting here for the first object's PUT (pipelining hides the
        // rest of it behind earlier commits) and the commit (one at a time).
        debug!(
            objects = group.len(),
            appends = group.iter().map(|g| g.appends.len()).sum::<usize>(),
            size_bytes = group.iter().map(|g| g.object.len()).sum::<usize>(),
            put_wait_ms = committing.duration_since(waited_for_put).as_millis() as u64,
            commit_ms = committing.elapsed().as_millis() as u64,
            "intake objects committed"
        );
        let outcomes = match committed {
            Ok(results) => results,
            Err(e) => {
                warn!(objects = group.len(), first = %group[0].key, error = %e, "intake commit failed");
                sequencer = None;
                failure = Some(Failure {
                    through: sealed_count.load(Ordering::Acquire),
                    object: group[0].number,
                    object_store: false,
                    message: e.to_string(),
                });
                for g in group {
                    // The outcome may be unknown (the connection went during COMMIT): the
                    // record is made only if no index row points into the object by then.
                    unrecorded_orphans.push((g.key, g.object.len() as u64, "commit failed".into()));
                    for r in g.requests {
                        let _ = r
                            .reply
                            .send(Err(SharedStorageError::Sequencer(e.to_string())));
                    }
                }
                continue;
            }
        };
        for (g, outcome) in group.iter().zip(&outcomes) {
            if !outcome
                .iter()
                .any(|r| matches!(r, Ok(c) if !c.entries.is_empty()))
            {
                unrecorded_orphans.push((
                    g.key.clone(),
                    g.object.len() as u64,
                    "every append refused".into(),
                ));
            }
        }
        if let Some(client) = sequencer.as_ref() {
            while let Some((k, size, reason)) = unrecorded_orphans.last() {
                if let Err(e) = sequencer::record_orphan(client, k, *size, reason).await {
                    warn!(object = %k, error = %e, "could not record an orphaned object yet");
                    break;
                }
                info!(object = %k, reason = %reason, "orphaned object recorded for collection");
                unrecorded_orphans.pop();
            }
        }
        for (g, outcome) in group.into_iter().zip(outcomes) {
            let object = &g.object;
            for (r, result) in g.requests.into_iter().zip(outcome) {
                if let Ok(done) = &result {
                    for e in &done.entries {
                        let start = e.byte_start as usize;
                        let end = start + e.byte_length as usize;
                        // The leader serves what it just wrote from memory, sharing the
                        // object's bytes.
                        if end <= object.len() {
                            inner
                                .cache
                                .insert(&g.key, e.byte_start, object.slice(start..end));
                        }
                    }
                    if let Some(p) = partitions.get(&(r.topic_id, r.partition)) {
                        p.apply_committed(&done.entries);
                    }
                }
                let _ = r.reply.send(result);
            }
        }
    }
}

async fn commit_on(
    inner: &Inner,
    sequencer: &mut Option<Client>,
    objects: &[(&str, &[StagedAppend])],
) -> Result<Vec<Vec<Result<Committed, SharedStorageError>>>, SharedStorageError> {
    let number = inner.commits_tried.fetch_add(1, Ordering::Relaxed) + 1;
    if inner.fail_commit_number.load(Ordering::Relaxed) == number {
        return Err(SharedStorageError::Sequencer(
            "injected commit failure".into(),
        ));
    }
    // Connecting has its own budget (every host of a failover URL tried in turn); the
    // request timeout bounds the commit itself.
    if sequencer.as_ref().is_none_or(|c| c.is_closed()) {
        *sequencer = Some(connect(&inner.pg_url).await?);
    }
    let commit = async {
        let Some(client) = sequencer.as_mut() else {
            return Err(SharedStorageError::Sequencer("no connection".into()));
        };
        sequencer::commit_objects(client, objects).await
    };
    match tokio::time::timeout(inner.config.request_timeout(), commit).await {
        Ok(r) => r,
        Err(_) => Err(SharedStorageError::Sequencer(format!(
            "commit: no answer in {} ms",
            inner.config.request_timeout_ms
        ))),
    }
}

/// Follows every broker's commits: LISTEN, and a catch-up read of every open partition after
/// each (re)connection, so a notification missed while disconnected is made up for.
async fn run_listener(inner: Weak<Inner>, partitions: Arc<Registry>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let url = strong.pg_url.clone();
        drop(strong);
        let connected = listen(&url).await;
        match connected {
            Ok((client, mut notes)) => {
                backoff = Duration::from_millis(100);
                if inner.upgrade().is_some() {
                    for p in partitions.all() {
                        if let Err(e) = p.catch_up().await {
                            warn!(error = %e, "catch-up after (re)connecting failed");
                        }
                    }
                }
                while let Some(payload) = notes.recv().await {
                    if inner.upgrade().is_none() {
                        return;
                    }
                    let Some((key, hw)) = parse_payload(&payload) else {
                        continue;
                    };
                    if let Some(p) = partitions.get(&key) {
                        if p.high_watermark() < hw {
                            if let Err(e) = p.catch_up().await {
                                warn!(error = %e, "catch-up on a notification failed");
                            }
                        }
                    }
                }
                drop(client);
                warn!("shared-storage listener lost PostgreSQL; reconnecting");
            }
            Err(e) => {
                debug!(error = %e, "shared-storage listener cannot connect yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn listen(
    url: &str,
) -> Result<(Client, mpsc::UnboundedReceiver<String>), SharedStorageError> {
    let (config, budget) = crate::shared::pg_config(url)?;
    let (client, mut connection) = tokio::time::timeout(budget, config.connect(NoTls))
        .await
        .map_err(|_| SharedStorageError::Sequencer("LISTEN: connecting timed out".into()))??;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(error = %e, "listener connection ended");
                    return;
                }
            }
        }
    });
    let sql = format!("LISTEN {NOTIFY_CHANNEL}");
    tokio::time::timeout(Duration::from_secs(10), client.batch_execute(&sql))
        .await
        .map_err(|_| SharedStorageError::Sequencer("LISTEN timed out".into()))??;
    Ok((client, rx))
}

fn parse_payload(payload: &str) -> Option<(PartitionKey, i64)> {
    let mut parts = payload.split(':');
    let topic_id = Uuid::parse_str(parts.next()?).ok()?;
    let partition = parts.next()?.parse().ok()?;
    let hw = parts.next()?.parse().ok()?;
    Some(((topic_id, partition), hw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_junk_is_ignored() {
        let id = Uuid::new_v4();
        assert_eq!(parse_payload(&format!("{id}:3:42")), Some(((id, 3), 42)));
        assert_eq!(parse_payload("nope"), None);
        assert_eq!(parse_payload(&format!("{id}:x:1")), None);
    }
}
