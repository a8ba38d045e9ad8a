//! Where a new partition's replicas go: on the brokers the image has registered (Kafka's
//! `ReplicaPlacer`, without racks yet), striped so that consecutive partitions lead on
//! different brokers.

use crate::image::MetadataImage;

/// The brokers that can take replicas: those registered in `image`, and `local`, which as
/// the controller of a combined-mode node is a broker before its registration is written.
/// Sorted, without repeats.
pub fn usable_brokers(image: &MetadataImage, local: i32) -> Vec<i32> {
    let mut brokers: Vec<i32> = image.brokers.keys().copied().collect();
    if !brokers.contains(&local) {
        brokers.push(local);
    }
    brokers.sort_unstable();
    brokers.dedup();
    brokers
}

/// Replica sets for partitions `first..first + count` of a topic, `replication_factor`
/// each: partition p starts at broker p (mod the broker count) and takes the next ones in
/// order, so leaders spread and no set repeats a broker. The caller has checked that
/// `replication_factor` is between 1 and `brokers.len()` and bounded `count`.
pub fn place_replicas(
    brokers: &[i32],
    first: i32,
    count: usize,
    replication_factor: usize,
) -> Vec<Vec<i32>> {
    assert!(
        (1..=brokers.len()).contains(&replication_factor),
        "replication factor {replication_factor} checked against {} broker(s)",
        brokers.len()
    );
    let n = brokers.len();
    let start = usize::try_from(first.max(0)).unwrap_or(0);
    (0..count)
        .map(|i| {
            let p = start.wrapping_add(i);
            (0..replication_factor)
                .map(|r| brokers[p.wrapping_add(r) % n])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::MetadataRecord;

    #[test]
    fn one_node_places_every_replica_on_itself() {
        let image = MetadataImage::empty();
        let brokers = usable_brokers(&image, 0);
        assert_eq!(brokers, vec![0]);
        assert_eq!(place_replicas(&brokers, 0, 3, 1), vec![vec![0]; 3]);
    }

    #[test]
    fn registered_brokers_share_partitions_and_leadership() {
        let mut image = MetadataImage::empty();
        for (offset, node_id) in [(0, 2), (1, 0), (2, 1)] {
            let r = MetadataRecord::RegisterBroker {
                node_id,
                endpoints: vec![],
                rack: None,
            };
            image.apply(offset, &r).unwrap();
        }
        let brokers = usable_brokers(&image, 0);
        assert_eq!(brokers, vec![0, 1, 2]);
        let sets = place_replicas(&brokers, 0, 4, 2);
        assert_eq!(sets, vec![vec![0, 1], vec![1, 2], vec![2, 0], vec![0, 1]]);
        // Added partitions continue the stripe where the topic's end is.
        assert_eq!(place_replicas(&brokers, 4, 1, 3), vec![vec![1, 2, 0]]);
    }
}
