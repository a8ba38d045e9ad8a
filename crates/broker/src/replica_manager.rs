//! The replicas this node hosts, kept in step with the metadata image (Kafka's ReplicaManager).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use strom_log::{Log, TopicPartition};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::RawConfig;
use crate::metadata::metadata_log::METADATA_TOPIC;
use crate::metadata::MetadataImage;
use crate::partition::{Partition, PartitionError};
use crate::topic_config::TopicConfig;

pub struct ReplicaManager {
    node_id: i32,
    data_dir: PathBuf,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    pub data_notify: Arc<Notify>,
}

impl ReplicaManager {
    pub fn new(node_id: i32, data_dir: &Path) -> Self {
        ReplicaManager {
            node_id,
            data_dir: data_dir.to_path_buf(),
            partitions: RwLock::new(HashMap::new()),
            data_notify: Arc::new(Notify::new()),
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let key = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        self.read_map().get(&key).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.read_map().values().cloned().collect()
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        match self.partitions.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write_map(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        match self.partitions.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Opens, creates, updates and deletes replicas so that they match `image`.
    pub fn apply_image(
        &self,
        image: &MetadataImage,
        broker: &RawConfig,
    ) -> Result<(), PartitionError> {
        let mut wanted: HashMap<TopicPartition, (uuid::Uuid, i32, TopicConfig)> = HashMap::new();
        for topic in image.topics.values() {
            let config = match TopicConfig::effective(broker, &image.topic_configs(&topic.name)) {
                Ok(c) => c,
                Err(e) => {
                    // Only reachable if a broker default changed under a stored override; use
                    // the broker defaults rather than refusing to host the topic.
                    warn!(topic = %topic.name, error = %e, "topic config no longer valid; using broker defaults");
                    match TopicConfig::broker_defaults(broker) {
                        Ok(c) => c,
                        Err(e) => {
                            return Err(PartitionError::Io(std::io::Error::other(e.to_string())))
                        }
                    }
                }
            };
            for (p, reg) in &topic.partitions {
                if reg.replicas.contains(&self.node_id) {
                    wanted.insert(
                        TopicPartition {
                            topic: topic.name.clone(),
                            partition: *p,
                        },
                        (topic.id, reg.leader_epoch, config.clone()),
                    );
                }
            }
        }
        let existing: Vec<(TopicPartition, Arc<Partition>)> = self
            .read_map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (tp, partition) in &existing {
            match wanted.get(tp) {
                Some((id, epoch, config)) if *id == partition.topic_id => {
                    partition.set_leader_epoch(*epoch);
                    if partition.config() != *config {
                        partition.update_config(config.clone())?;
                    }
                }
                _ => {
                    self.write_map().remove(tp);
                    let dir = self.data_dir.join(tp.dir_name());
                    info!(partition = %tp, "deleting replica");
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        warn!(dir = %dir.display(), error = %e, "could not delete partition directory");
                    }
                }
            }
        }
        for (tp, (id, epoch, config)) in wanted {
            if self.read_map().contains_key(&tp) {
                continue;
            }
            let dir = self.data_dir.join(tp.dir_name());
            let log = Log::open(&dir, tp.clone(), config.log_config())?;
            let partition = Partition::new(log, id, epoch, config, self.data_notify.clone());
            self.write_map().insert(tp, Arc::new(partition));
        }
        Ok(())
    }

    /// Partition directories that no topic in the image owns: left by a crash between a
    /// topic's deletion and its directory's removal. Removed at start-up, as Kafka does.
    pub fn remove_orphans(&self) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        let hosted = self.read_map();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(tp) = TopicPartition::parse_dir_name(&name) else {
                continue;
            };
            if tp.topic == METADATA_TOPIC || hosted.contains_key(&tp) || !entry.path().is_dir() {
                continue;
            }
            info!(dir = %name, "removing the directory of a deleted partition");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                warn!(dir = %name, error = %e, "could not remove orphan partition directory");
            }
        }
    }

    /// Flushes and closes every log (clean shutdown: the next start recovers nothing).
    pub async fn shutdown(&self) {
        let all: Vec<(TopicPartition, Arc<Partition>)> = self.write_map().drain().collect();
        for (tp, partition) in all {
            if let Err(e) = partition.flush().await {
                warn!(partition = %tp, error = %e, "flush at shutdown failed");
            }
            if let Err(e) = partition.with_log(|log| log.close()) {
                warn!(partition = %tp, error = %e, "close at shutdown failed");
            }
        }
    }
}
