//! The transaction coordinator's ports, implemented over this broker: `__transaction_state`
//! through the replica manager (the same log port as the group coordinator's), the image,
//! producer ids and topic creation through the controller, and the marker writer over the
//! partitions hosted here.
//!
//! As with the group ports, the broker is held weakly: it owns the coordinator.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use futures_util::future::BoxFuture;
use proto_kafka::ResponseError;
use strom_group_coordinator::ports::PortFuture;
use strom_group_coordinator::{SystemClock, OFFSETS_TOPIC};
use strom_metadata::{MetadataDelta, MetadataImage, MetadataPublisher, PublishError};
use strom_transaction_coordinator::state::{Marker, TxnResult};
use strom_transaction_coordinator::{
    Cluster, MarkerSink, Ports, TransactionCoordinator, TRANSACTION_STATE_TOPIC,
};

use crate::broker::{Broker, ProducerIdSupply};
use crate::config::BrokerConfig;
use crate::controller;
use crate::group_ports::BrokerGroupPorts;
use crate::partition::{append_error_code, PartitionLog};

/// Producer ids kept ready for the coordinator, which takes them synchronously under its
/// lock: InitProducerId and EndTxn top this up through the controller before they call it.
const SPARE_PRODUCER_IDS: usize = 2;

/// The transaction coordinator of the broker `me` will be, and the cluster port the handlers
/// top up producer ids through.
pub fn coordinator(
    me: Weak<Broker>,
    config: &BrokerConfig,
) -> (Arc<TransactionCoordinator>, Arc<TxnCluster>) {
    let cluster = Arc::new(TxnCluster {
        broker: me.clone(),
        spare_producer_ids: Mutex::new(Vec::new()),
    });
    let ports = Ports {
        log: Arc::new(BrokerGroupPorts::for_topic(
            me.clone(),
            TRANSACTION_STATE_TOPIC,
        )),
        cluster: cluster.clone(),
        markers: Arc::new(BrokerMarkerSink {
            broker: me,
            test_delay_ms: config.test_txn_marker_delay_ms,
        }),
        clock: Arc::new(SystemClock),
    };
    (
        TransactionCoordinator::new(ports, config.txns.clone(), config.node_id),
        cluster,
    )
}

pub struct TxnCluster {
    broker: Weak<Broker>,
    spare_producer_ids: Mutex<Vec<i64>>,
}

impl TxnCluster {
    fn spares(&self) -> std::sync::MutexGuard<'_, Vec<i64>> {
        match self.spare_producer_ids.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl ProducerIdSupply for TxnCluster {
    /// Makes sure the coordinator finds a producer id when it needs one (a new id, an
    /// exhausted epoch), allocating from the controller's blocks.
    fn reserve_producer_ids(&self) -> BoxFuture<'_, Result<(), ResponseError>> {
        Box::pin(async move {
            let Some(broker) = self.broker.upgrade() else {
                return Err(ResponseError::CoordinatorNotAvailable);
            };
            while self.spares().len() < SPARE_PRODUCER_IDS {
                let id = controller::allocate_producer_id(&broker)
                    .await
                    .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
                self.spares().push(id);
            }
            Ok(())
        })
    }
}

impl Cluster for TxnCluster {
    fn image(&self) -> Arc<MetadataImage> {
        match self.broker.upgrade() {
            Some(b) => b.image(),
            None => Arc::new(MetadataImage::empty()),
        }
    }

    fn next_producer_id(&self) -> Result<i64, ResponseError> {
        // Kafka's ProducerIdManager answers this while its next block is on the way; the
        // client retries.
        self.spares()
            .pop()
            .ok_or(ResponseError::CoordinatorLoadInProgress)
    }

    fn create_transaction_state_topic(
        &self,
        partitions: i32,
        replication_factor: i16,
        mut configs: BTreeMap<String, String>,
    ) -> PortFuture<Result<(), String>> {
        // Strom elects no out-of-sync leader ever, so it has no such topic setting to refuse.
        configs.remove("unclean.leader.election.enable");
        let broker = self.broker.upgrade();
        Box::pin(async move {
            let broker = broker.ok_or_else(|| "the broker is stopping".to_string())?;
            controller::create_internal_topic(
                &broker,
                TRANSACTION_STATE_TOPIC,
                partitions,
                replication_factor,
                configs,
            )
            .await
        })
    }
}

/// Writes COMMIT/ABORT control batches into the partitions led here (WriteTxnMarkers' work,
/// in process: a cluster of one leads every partition of its transactions), each durable
/// before it counts as written; a partition led elsewhere answers NOT_LEADER_OR_FOLLOWER,
/// which the coordinator retries.
pub struct BrokerMarkerSink {
    broker: Weak<Broker>,
    /// `strom.test.txn.marker.delay.ms`: 0 but in tests of a broker dying before its markers.
    test_delay_ms: u64,
}

impl MarkerSink for BrokerMarkerSink {
    fn write_markers(&self, markers: Vec<Marker>) -> PortFuture<Vec<Result<(), ResponseError>>> {
        let broker = self.broker.clone();
        let test_delay_ms = self.test_delay_ms;
        Box::pin(async move {
            if test_delay_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(test_delay_ms)).await;
            }
            let Some(broker) = broker.upgrade() else {
                return markers
                    .iter()
                    .map(|_| Err(ResponseError::NotCoordinator))
                    .collect();
            };
            let mut out = Vec::with_capacity(markers.len());
            for m in &markers {
                out.push(write_marker(&broker, m).await);
            }
            out
        })
    }
}

async fn write_marker(broker: &Arc<Broker>, m: &Marker) -> Result<(), ResponseError> {
    if broker.image().topic(&m.topic).is_none() {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    let commit = m.result == TxnResult::Commit;
    let now_ms = strom_metadata::metadata_log::now_ms();
    if let Some(shared) = broker.replicas.shared_partition(&m.topic, m.partition) {
        // Every broker hosts every shared partition and knows its leader epoch from the
        // image, so the marker goes through this broker's intake whoever leads (the commit
        // checks that epoch, as a produce's): durable in PostgreSQL before it counts. In
        // `__consumer_offsets` the group coordinator (on the partition's leader) learns of it
        // as its partition passes it.
        shared
            .append_marker(
                m.producer_id,
                m.producer_epoch,
                m.coordinator_epoch,
                commit,
                now_ms,
            )
            .await
            .map_err(|e| append_error_code(&e))?;
        return Ok(());
    }
    let partition = broker.replicas.leader_partition(&m.topic, m.partition)?;
    partition
        .append_marker(
            m.producer_id,
            m.producer_epoch,
            m.coordinator_epoch,
            commit,
            now_ms,
        )
        .await
        .map_err(|e| append_error_code(&e))?;
    if m.topic == OFFSETS_TOPIC {
        // The transaction's offsets are in the log already (TxnOffsetCommit wrote them as
        // its transactional batch), so the durable marker alone decides them, now and on any
        // later load; this only brings the groups in memory to what the log says. Were the
        // broker to stop before it, the load replays the marker.
        broker
            .groups
            .complete_transaction(m.partition, m.producer_id, commit);
    }
    Ok(())
}

/// Follows `__transaction_state` leadership in each committed image, after the group
/// coordinator.
pub struct TxnPublisher(pub Arc<TransactionCoordinator>);

impl MetadataPublisher for TxnPublisher {
    fn name(&self) -> &'static str {
        "transaction_coordinator"
    }

    fn on_metadata_update(
        &self,
        _delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError> {
        self.0.follow_image(image);
        Ok(())
    }
}
