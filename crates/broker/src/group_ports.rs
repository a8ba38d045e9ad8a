//! The group coordinator's ports, implemented over this broker: `__consumer_offsets` through
//! the replica manager, the image and topic creation through the controller.
//!
//! The ports hold the broker weakly: the broker owns the coordinator, so a strong reference
//! back would keep both alive forever. Once the broker is gone every port answers as a
//! partition that is not here.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use bytes::{Bytes, BytesMut};
use proto_kafka::ResponseError;
use strom_group_coordinator::ports::{AppendedRange, PortFuture, ReadError, StartedAppend};
use strom_group_coordinator::{
    Cluster, GroupCoordinator, OffsetsLog, Ports, SystemClock, OFFSETS_TOPIC,
};
use strom_metadata::MetadataImage;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::controller;
use crate::partition::{append_error_code, Appended, Partition, PartitionError, PartitionLog};
use crate::shared_partition::SharedLog;

/// The group coordinator of the broker `me` will be, over these ports.
pub fn coordinator(me: Weak<Broker>, config: &BrokerConfig) -> Arc<GroupCoordinator> {
    let ports = Ports {
        log: Arc::new(BrokerGroupPorts::new(me.clone())),
        cluster: Arc::new(BrokerGroupPorts::new(me)),
        clock: Arc::new(SystemClock),
    };
    Arc::new(GroupCoordinator::new(
        config.groups.clone(),
        config.node_id,
        ports,
    ))
}

pub struct BrokerGroupPorts {
    broker: Weak<Broker>,
    /// The internal topic whose partitions the log port serves: `__consumer_offsets`, or
    /// `__transaction_state` for the transaction coordinator (the same port).
    topic: &'static str,
}

impl BrokerGroupPorts {
    pub fn new(broker: Weak<Broker>) -> BrokerGroupPorts {
        BrokerGroupPorts::for_topic(broker, OFFSETS_TOPIC)
    }

    /// The log port over another internal topic's partitions.
    pub fn for_topic(broker: Weak<Broker>, topic: &'static str) -> BrokerGroupPorts {
        BrokerGroupPorts { broker, topic }
    }

    /// The partition as a request sees it: only where the image makes this node its leader,
    /// else Kafka's error for it (NOT_LEADER_OR_FOLLOWER maps to NOT_COORDINATOR).
    fn leader(&self, partition: i32) -> Result<Arc<dyn PartitionLog>, ResponseError> {
        self.broker
            .upgrade()
            .ok_or(ResponseError::UnknownTopicOrPartition)?
            .replicas
            .leader_partition(self.topic, partition)
    }

    /// The local replica, for loading it.
    fn replica(&self, partition: i32) -> Option<Arc<Partition>> {
        self.broker.upgrade()?.replicas.get(self.topic, partition)
    }

    /// In cluster mode with object storage, the partition in shared storage, or why it cannot
    /// be read yet (its opening waits for PostgreSQL): never "not hosted", which a loader
    /// would take for an empty partition. None on a broker without shared storage.
    fn shared(&self, partition: i32) -> Option<Result<Arc<SharedLog>, ReadError>> {
        let broker = self.broker.upgrade()?;
        broker.replicas.shared_storage()?;
        Some(
            broker
                .replicas
                .shared_partition(self.topic, partition)
                .ok_or_else(|| read_error(self.topic, partition, "not open yet")),
        )
    }

    /// Where a shared partition's log starts and ends, as a new coordinator loads it: first
    /// its leader epoch claimed in PostgreSQL (an older leader commits nothing after that),
    /// then every commit up to now read into the index, so the load sees everything the
    /// previous coordinator had acknowledged.
    fn shared_offsets(&self, log: &SharedLog, partition: i32) -> Result<(i64, i64), ReadError> {
        let broker = self
            .broker
            .upgrade()
            .ok_or_else(|| read_error(self.topic, partition, "the broker is stopping"))?;
        let storage = broker.replicas.shared_storage().cloned();
        let leads = log.leader_id() == broker.node_id();
        let (topic_id, epoch) = (log.topic_id(), log.leader_epoch());
        let shared = log.shared().clone();
        if self.topic == OFFSETS_TOPIC {
            // A transaction's marker may be written by any broker (the transaction
            // coordinator's): the group coordinator here learns of it as its partition passes
            // it, which decides the producer's pending offsets (a marker passed during the
            // load waits for the load's end, as the group coordinator keeps it).
            let weak = self.broker.clone();
            shared.set_marker_listener(Arc::new(move |producer_id, commit| {
                if let Some(broker) = weak.upgrade() {
                    broker
                        .groups
                        .complete_transaction(partition, producer_id, commit);
                }
            }));
        }
        block_on(async move {
            if let (true, Some(storage)) = (leads, storage) {
                storage
                    .claim_leader_epoch(topic_id, partition, epoch)
                    .await?;
            }
            shared.catch_up().await
        })
        .map_err(|e| read_error(self.topic, partition, e))?
        .map_err(|e| read_error(self.topic, partition, e))?;
        Ok((log.log_start_offset().unwrap_or(0), log.high_watermark()))
    }
}

/// Runs `f` to its end from the synchronous port. Loading runs in the metadata publisher,
/// which on a multi-threaded runtime may wait (the worker hands its other tasks away, as
/// the replica manager's opening of shared partitions does); elsewhere it cannot.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, &'static str> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            Ok(tokio::task::block_in_place(|| h.block_on(f)))
        }
        _ => Err("no runtime to wait on for shared storage"),
    }
}

fn read_error(topic: &str, partition: i32, reason: impl ToString) -> ReadError {
    ReadError {
        partition: format!("{topic}-{partition}"),
        reason: reason.to_string(),
    }
}

fn appended_range(
    appended: Result<Appended, PartitionError>,
) -> Result<AppendedRange, ResponseError> {
    let info = appended.map_err(|e| append_error_code(&e))?;
    Ok(AppendedRange {
        first_offset: info.first_offset,
        last_offset: info.last_offset,
    })
}

impl OffsetsLog for BrokerGroupPorts {
    fn append(
        &self,
        partition: i32,
        batch: &mut BytesMut,
        now_ms: i64,
    ) -> Result<AppendedRange, ResponseError> {
        appended_range(self.leader(partition)?.append_as_leader(batch, now_ms))
    }

    fn append_transactional(
        &self,
        partition: i32,
        batch: &mut BytesMut,
        now_ms: i64,
    ) -> Result<AppendedRange, ResponseError> {
        appended_range(self.leader(partition)?.append_as_coordinator(batch, now_ms))
    }

    fn start_append(
        &self,
        partition: i32,
        mut batch: BytesMut,
        transactional: bool,
        now_ms: i64,
    ) -> Result<StartedAppend, ResponseError> {
        let log = self.leader(partition)?;
        // A partition in shared storage sequences the batch at its commit (the leader epoch
        // checked there fences a deposed coordinator's write): the offsets come with it.
        // A transactional batch (TxnOffsetCommit's) is the coordinator's for the producer:
        // its epoch is checked there, not its sequences.
        let pending = if transactional {
            log.start_append_as_coordinator(&batch, now_ms)
        } else {
            log.start_append(&batch, now_ms)
        };
        if let Some(pending) = pending {
            return Ok(StartedAppend {
                range: None,
                durable: Box::pin(async move {
                    let appended = pending.await.map_err(|e| append_error_code(&e))?;
                    Ok(AppendedRange {
                        first_offset: appended.first_offset,
                        last_offset: appended.last_offset,
                    })
                }),
            });
        }
        let range = appended_range(if transactional {
            log.append_as_coordinator(&mut batch, now_ms)
        } else {
            log.append_as_leader(&mut batch, now_ms)
        })?;
        let durable = self.wait_durable(partition, range.last_offset + 1);
        Ok(StartedAppend {
            range: Some(range),
            durable: Box::pin(async move { durable.await.map(|()| range) }),
        })
    }

    fn wait_durable(
        &self,
        partition: i32,
        end_offset: i64,
    ) -> PortFuture<Result<(), ResponseError>> {
        let replica = self.leader(partition);
        Box::pin(async move {
            replica?
                .complete_append(end_offset)
                .await
                .map_err(|e| append_error_code(&e))
        })
    }

    fn offsets(&self, partition: i32) -> Option<Result<(i64, i64), ReadError>> {
        if let Some(shared) = self.shared(partition) {
            return Some(shared.and_then(|log| self.shared_offsets(&log, partition)));
        }
        let replica = self.replica(partition)?;
        Some(
            replica
                .with_log(|log| (log.log_start_offset(), log.log_end_offset()))
                .map_err(|e| read_error(self.topic, partition, e)),
        )
    }

    fn read(
        &self,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        end_offset: i64,
    ) -> Result<Bytes, ReadError> {
        if let Some(shared) = self.shared(partition) {
            let log = shared?;
            let read = block_on(async {
                match log.read_bytes(offset, max_bytes, true, false) {
                    Some(read) => read.await,
                    None => Err(PartitionError::Rejected(ResponseError::KafkaStorageError)),
                }
            })
            .map_err(|e| read_error(self.topic, partition, e))?
            .map_err(|e| read_error(self.topic, partition, e))?;
            // Whole batches from `offset` up to the high watermark; the loader stops at
            // `end_offset` itself.
            let _ = end_offset;
            return Ok(read.records);
        }
        let replica = self
            .replica(partition)
            .ok_or_else(|| read_error(self.topic, partition, "not hosted here"))?;
        let slice = replica
            .with_log(|log| log.read(offset, max_bytes, end_offset, true))
            .map_err(|e| read_error(self.topic, partition, e))?
            .map_err(|e| read_error(self.topic, partition, e))?;
        slice
            .read_bytes()
            .map_err(|e| read_error(self.topic, partition, e))
    }
}

impl Cluster for BrokerGroupPorts {
    fn image(&self) -> Arc<MetadataImage> {
        match self.broker.upgrade() {
            Some(b) => b.image(),
            None => Arc::new(MetadataImage::empty()),
        }
    }

    fn create_offsets_topic(
        &self,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> PortFuture<Result<(), String>> {
        let broker = self.broker.upgrade();
        Box::pin(async move {
            let broker = broker.ok_or_else(|| "the broker is stopping".to_string())?;
            controller::create_internal_topic(
                &broker,
                OFFSETS_TOPIC,
                partitions,
                replication_factor,
                configs,
            )
            .await
        })
    }
}
