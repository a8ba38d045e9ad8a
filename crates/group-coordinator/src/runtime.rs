//! Hosting groups by `__consumer_offsets` partition, as Kafka's coordinator runtime does: a
//! group lives in the partition `partition_for(group_id)` names, and this node serves it only
//! while it leads that partition. Gaining a partition loads its groups from the log; losing it
//! drops them from memory and fails their waiting requests with NOT_COORDINATOR, so clients
//! look for the new coordinator. The metadata image decides leadership; on one node this
//! node leads every partition.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use proto_kafka::ResponseError;
use strom_metadata::{MetadataDelta, MetadataImage, MetadataPublisher, PublishError};
use tracing::{info, warn};

use crate::coordinator::{lock, GroupCoordinator, Slot, MAX_GROUPS};
use crate::state::Group;
use crate::{partition_for, OFFSETS_TOPIC};

/// One `__consumer_offsets` partition as this node hosts it.
pub(crate) enum Shard {
    /// Being read from the log: its groups answer COORDINATOR_LOAD_IN_PROGRESS.
    Loading,
    Active(HashMap<String, Slot>),
}

/// The hosted partitions, by number.
#[derive(Default)]
pub(crate) struct Shards {
    pub(crate) by_partition: RwLock<HashMap<i32, Shard>>,
    /// Partitions of `__consumer_offsets` in the image; 0 while the topic does not exist.
    pub(crate) partition_count: AtomicI32,
    /// Groups over all shards, held against [`MAX_GROUPS`].
    pub(crate) group_count: AtomicUsize,
}

impl Shards {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, HashMap<i32, Shard>> {
        match self.by_partition.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, HashMap<i32, Shard>> {
        match self.by_partition.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn set_gauge(&self) {
        metrics::gauge!("strom_consumer_groups")
            .set(self.group_count.load(Ordering::Acquire) as f64);
    }
}

/// Which partitions of `__consumer_offsets` this node leads in `image`.
pub fn led_partitions(image: &MetadataImage, node_id: i32) -> BTreeSet<i32> {
    image
        .topic(OFFSETS_TOPIC)
        .map(|t| {
            t.partitions
                .iter()
                .filter(|(_, p)| p.leader == node_id)
                .map(|(n, _)| *n)
                .collect()
        })
        .unwrap_or_default()
}

/// The node that coordinates `group_id` in `image`: the leader of its partition of
/// `__consumer_offsets`. None while the topic does not exist or the partition has no leader.
pub fn coordinator_node(image: &MetadataImage, group_id: &str) -> Option<i32> {
    let topic = image.topic(OFFSETS_TOPIC)?;
    let p = partition_for(group_id, topic.partitions.len() as i32);
    topic
        .partitions
        .get(&p)
        .map(|reg| reg.leader)
        .filter(|leader| *leader >= 0)
}

impl GroupCoordinator {
    /// The partition of `group_id`, or None while `__consumer_offsets` does not exist.
    pub(crate) fn partition_of(&self, group_id: &str) -> Option<i32> {
        let count = self.shards.partition_count.load(Ordering::Acquire);
        (count > 0).then(|| partition_for(group_id, count))
    }

    /// Whether this node may serve `group_id` now: NOT_COORDINATOR when another node leads
    /// its partition (or this one is stopping), COORDINATOR_LOAD_IN_PROGRESS while loading.
    pub(crate) fn check_coordinator(&self, group_id: &str) -> Result<(), ResponseError> {
        if self.is_stopping() {
            return Err(ResponseError::NotCoordinator);
        }
        let Some(p) = self.partition_of(group_id) else {
            // No offsets topic yet: every group is new, and served here once it exists.
            return Ok(());
        };
        match self.shards.read().get(&p) {
            Some(Shard::Active(_)) => Ok(()),
            Some(Shard::Loading) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    pub fn get(&self, group_id: &str) -> Option<Slot> {
        let p = self.partition_of(group_id)?;
        match self.shards.read().get(&p) {
            Some(Shard::Active(groups)) => groups.get(group_id).cloned(),
            _ => None,
        }
    }

    pub(crate) fn get_or_create(&self, group_id: &str) -> Result<Slot, ResponseError> {
        if let Some(g) = self.get(group_id) {
            return Ok(g);
        }
        let p = self
            .partition_of(group_id)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let mut shards = self.shards.write();
        let groups = match shards.get_mut(&p) {
            Some(Shard::Active(groups)) => groups,
            Some(Shard::Loading) => return Err(ResponseError::CoordinatorLoadInProgress),
            None => return Err(ResponseError::NotCoordinator),
        };
        if let Some(g) = groups.get(group_id) {
            return Ok(g.clone());
        }
        let total = self.shards.group_count.load(Ordering::Acquire);
        if total >= MAX_GROUPS {
            warn!(groups = total, "refusing a new group: MAX_GROUPS reached");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let slot = Arc::new(Mutex::new(Group::new(group_id, self.now_ms())));
        groups.insert(group_id.to_string(), slot.clone());
        self.shards.group_count.fetch_add(1, Ordering::AcqRel);
        drop(shards);
        self.shards.set_gauge();
        Ok(slot)
    }

    pub(crate) fn forget(&self, group_id: &str, slot: &Slot) {
        let Some(p) = self.partition_of(group_id) else {
            return;
        };
        let mut shards = self.shards.write();
        if let Some(Shard::Active(groups)) = shards.get_mut(&p) {
            if groups.get(group_id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                groups.remove(group_id);
                self.shards.group_count.fetch_sub(1, Ordering::AcqRel);
            }
        }
        drop(shards);
        self.shards.set_gauge();
    }

    /// Every hosted group, for sweeps and listings.
    pub(crate) fn snapshot(&self) -> Vec<(String, Slot)> {
        self.shards
            .read()
            .values()
            .filter_map(|s| match s {
                Shard::Active(groups) => Some(groups),
                Shard::Loading => None,
            })
            .flat_map(|groups| groups.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }

    /// The partitions hosted (loaded or loading) now.
    pub fn hosted_partitions(&self) -> BTreeSet<i32> {
        self.shards.read().keys().copied().collect()
    }

    /// Brings the hosted partitions in line with `image`: loads those this node now leads,
    /// unloads those it no longer leads. Returns the number of groups loaded.
    pub fn on_image(&self, image: &MetadataImage) -> Result<usize, crate::loader::GroupLoadError> {
        let count = image
            .topic(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len() as i32);
        let previous = self.shards.partition_count.swap(count, Ordering::AcqRel);
        if previous > 0 && count != previous {
            // Kafka does not support it either: every group's partition moves.
            warn!(
                from = previous,
                to = count,
                "{OFFSETS_TOPIC} changed its partition count; groups keep their old partitions until restart"
            );
        }
        let led = led_partitions(image, self.node_id);
        let hosted = self.hosted_partitions();
        for p in hosted.difference(&led) {
            self.unload(*p);
        }
        let mut loaded = 0;
        for p in led.difference(&hosted) {
            loaded += self.load_partition(*p)?;
        }
        Ok(loaded)
    }

    /// Reads partition `p`'s groups and serves them.
    pub fn load_partition(&self, p: i32) -> Result<usize, crate::loader::GroupLoadError> {
        self.shards.write().insert(p, Shard::Loading);
        let groups = match self.read_partition(p) {
            Ok(g) => g,
            Err(e) => {
                self.shards.write().remove(&p);
                return Err(e);
            }
        };
        let n = groups.len();
        let slots: HashMap<String, Slot> = groups
            .into_iter()
            .map(|(id, g)| (id, Arc::new(Mutex::new(g))))
            .collect();
        let to_schedule: Vec<Slot> = slots.values().cloned().collect();
        self.shards.write().insert(p, Shard::Active(slots));
        self.shards.group_count.fetch_add(n, Ordering::AcqRel);
        self.shards.set_gauge();
        for slot in to_schedule {
            let mut g = lock(&slot);
            self.schedule(&mut g);
        }
        Ok(n)
    }

    /// Stops serving partition `p`: its groups leave memory (their records stay in the log for
    /// the next coordinator), and whoever waits on them is told NOT_COORDINATOR.
    pub fn unload(&self, p: i32) {
        let removed = self.shards.write().remove(&p);
        if let Some(Shard::Active(groups)) = removed {
            let n = groups.len();
            for slot in groups.values() {
                lock(slot).fail_waiters(ResponseError::NotCoordinator);
            }
            self.shards.group_count.fetch_sub(n, Ordering::AcqRel);
            self.shards.set_gauge();
            info!(
                partition = p,
                groups = n,
                "{OFFSETS_TOPIC} partition unloaded"
            );
        }
    }
}

impl MetadataPublisher for GroupCoordinator {
    fn name(&self) -> &'static str {
        "group-coordinator"
    }

    fn on_metadata_update(
        &self,
        delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError> {
        let deleted: HashSet<String> = delta.deleted_topic_names(image);
        self.on_topics_deleted(&deleted);
        self.on_image(image).map(|_| ()).map_err(|e| PublishError {
            publisher: "group-coordinator",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests;
