//! Hosting groups by `__consumer_offsets` partition, as Kafka's coordinator runtime does: a
//! group lives in the partition `partition_for(group_id)` names, and this node serves it only
//! while it leads that partition. Gaining a partition loads its groups from the log; losing it
//! drops them from memory and fails their waiting requests with NOT_COORDINATOR, so clients
//! look for the new coordinator. The metadata image decides leadership; on one node this
//! node leads every partition.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use proto_kafka::ResponseError;
use strom_metadata::MetadataImage;
use tracing::{info, warn};

use crate::state::Group;
use crate::{partition_for, OFFSETS_TOPIC};

/// Groups one node keeps. Kafka has no such bound; every group costs memory, and anyone may
/// create one with a JoinGroup or a simple OffsetCommit.
pub const MAX_GROUPS: usize = 100_000;

pub type Slot = Arc<Mutex<Group>>;

pub fn lock(slot: &Mutex<Group>) -> MutexGuard<'_, Group> {
    match slot.lock() {
        Ok(g) => g,
        // A panic mid-change leaves the group as it was at the panic; serving it beats
        // refusing the group forever.
        Err(p) => p.into_inner(),
    }
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

/// Which partitions of `__consumer_offsets` `node_id` leads in `image`.
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

/// One `__consumer_offsets` partition as this node hosts it.
enum Shard {
    /// Being read from the log: its groups answer COORDINATOR_LOAD_IN_PROGRESS.
    Loading,
    Active(HashMap<String, Slot>),
}

/// The hosted partitions and their groups.
#[derive(Default)]
pub struct Shards {
    by_partition: RwLock<HashMap<i32, Shard>>,
    /// Partitions of `__consumer_offsets` in the image; 0 while the topic does not exist.
    partition_count: AtomicI32,
    /// Groups over all shards, held against [`MAX_GROUPS`].
    group_count: AtomicUsize,
}

impl Shards {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<i32, Shard>> {
        match self.by_partition.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<i32, Shard>> {
        match self.by_partition.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn set_gauge(&self) {
        metrics::gauge!("strom_consumer_groups")
            .set(self.group_count.load(Ordering::Acquire) as f64);
    }

    /// Records the partition count of `__consumer_offsets` in force.
    pub fn set_partition_count(&self, count: i32) {
        let previous = self.partition_count.swap(count, Ordering::AcqRel);
        if previous > 0 && count != previous {
            // Kafka does not support it either: every group's partition moves.
            warn!(
                from = previous,
                to = count,
                "{OFFSETS_TOPIC} changed its partition count; groups keep their old partitions until restart"
            );
        }
    }

    /// The partition of `group_id`, or None while `__consumer_offsets` does not exist.
    pub fn partition_of(&self, group_id: &str) -> Option<i32> {
        let count = self.partition_count.load(Ordering::Acquire);
        (count > 0).then(|| partition_for(group_id, count))
    }

    /// Whether `group_id` is served here: NOT_COORDINATOR when another node leads its
    /// partition, COORDINATOR_LOAD_IN_PROGRESS while it loads.
    pub fn check(&self, group_id: &str) -> Result<(), ResponseError> {
        let Some(p) = self.partition_of(group_id) else {
            // No offsets topic yet: every group is new, and served here once it exists.
            return Ok(());
        };
        match self.read().get(&p) {
            Some(Shard::Active(_)) => Ok(()),
            Some(Shard::Loading) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    pub fn get(&self, group_id: &str) -> Option<Slot> {
        let p = self.partition_of(group_id)?;
        match self.read().get(&p) {
            Some(Shard::Active(groups)) => groups.get(group_id).cloned(),
            _ => None,
        }
    }

    pub fn get_or_create(&self, group_id: &str, now_ms: i64) -> Result<Slot, ResponseError> {
        if let Some(g) = self.get(group_id) {
            return Ok(g);
        }
        let p = self
            .partition_of(group_id)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let mut shards = self.write();
        let groups = match shards.get_mut(&p) {
            Some(Shard::Active(groups)) => groups,
            Some(Shard::Loading) => return Err(ResponseError::CoordinatorLoadInProgress),
            None => return Err(ResponseError::NotCoordinator),
        };
        if let Some(g) = groups.get(group_id) {
            return Ok(g.clone());
        }
        let total = self.group_count.load(Ordering::Acquire);
        if total >= MAX_GROUPS {
            warn!(groups = total, "refusing a new group: MAX_GROUPS reached");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let slot = Arc::new(Mutex::new(Group::new(group_id, now_ms)));
        groups.insert(group_id.to_string(), slot.clone());
        self.group_count.fetch_add(1, Ordering::AcqRel);
        drop(shards);
        self.set_gauge();
        Ok(slot)
    }

    /// Removes `group_id` if `slot` is still the group of that name.
    pub fn forget(&self, group_id: &str, slot: &Slot) {
        let Some(p) = self.partition_of(group_id) else {
            return;
        };
        let mut shards = self.write();
        if let Some(Shard::Active(groups)) = shards.get_mut(&p) {
            if groups.get(group_id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                groups.remove(group_id);
                self.group_count.fetch_sub(1, Ordering::AcqRel);
            }
        }
        drop(shards);
        self.set_gauge();
    }

    /// Every hosted group, for sweeps and listings.
    pub fn snapshot(&self) -> Vec<(String, Slot)> {
        self.read()
            .values()
            .filter_map(|s| match s {
                Shard::Active(groups) => Some(groups),
                Shard::Loading => None,
            })
            .flat_map(|groups| groups.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }

    /// The partitions hosted (loaded or loading) now.
    pub fn hosted(&self) -> BTreeSet<i32> {
        self.read().keys().copied().collect()
    }

    /// Whether `p` is being read from the log now.
    pub fn is_loading(&self, p: i32) -> bool {
        matches!(self.read().get(&p), Some(Shard::Loading))
    }

    /// Marks `p` as loading: its groups are refused until [`Shards::activate`].
    pub fn begin_loading(&self, p: i32) {
        let previous = self.write().insert(p, Shard::Loading);
        debug_assert!(previous.is_none(), "partition {p} loaded twice");
    }

    /// Gives up loading `p`; it stays unhosted.
    pub fn abort_loading(&self, p: i32) {
        self.write().remove(&p);
    }

    /// Serves `p` with the groups loaded for it; returns their slots.
    pub fn activate(&self, p: i32, groups: HashMap<String, Group>) -> Vec<Slot> {
        let n = groups.len();
        let slots: HashMap<String, Slot> = groups
            .into_iter()
            .map(|(id, g)| (id, Arc::new(Mutex::new(g))))
            .collect();
        let out = slots.values().cloned().collect();
        self.write().insert(p, Shard::Active(slots));
        self.group_count.fetch_add(n, Ordering::AcqRel);
        self.set_gauge();
        out
    }

    /// Stops serving `p`: its groups leave memory (their records stay in the log for the next
    /// coordinator), and whoever waits on them is told NOT_COORDINATOR.
    pub fn unload(&self, p: i32) {
        let removed = self.write().remove(&p);
        if let Some(Shard::Active(groups)) = removed {
            let n = groups.len();
            for slot in groups.values() {
                lock(slot).fail_waiters(ResponseError::NotCoordinator);
            }
            self.group_count.fetch_sub(n, Ordering::AcqRel);
            self.set_gauge();
            info!(
                partition = p,
                groups = n,
                "{OFFSETS_TOPIC} partition unloaded"
            );
        }
    }
}

#[cfg(test)]
mod tests;
