//! Leader assignment in a cluster (Kafka's `PartitionChangeBuilder` and the preferred-leader
//! balancing, collapsed): every partition lists the live unfenced brokers as its replicas and
//! ISR (the data is in shared storage, so any of them can lead without catching up), and its
//! leaders are spread evenly over them while moving as few as possible. A leader change
//! bumps the leader epoch; any change bumps the partition epoch.

use std::collections::BTreeMap;

use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// The Partition records that bring `image` in line with `live` (sorted, without repeats):
/// empty when it already is, and when no broker is live (nobody could lead).
pub fn balance_leaders(image: &MetadataImage, live: &[i32]) -> Vec<MetadataRecord> {
    if live.is_empty() {
        return Vec::new();
    }
    let mut names: Vec<&String> = image.topics.keys().collect();
    names.sort();
    let partitions: Vec<_> = names
        .iter()
        .filter_map(|n| image.topics.get(*n))
        .flat_map(|t| t.partitions.iter().map(move |(p, reg)| (t.id, *p, reg)))
        .collect();
    let n = live.len();
    let floor = partitions.len() / n;
    let mut extra = partitions.len() % n;
    let mut count: BTreeMap<i32, usize> = live.iter().map(|b| (*b, 0)).collect();
    let mut leader: Vec<Option<i32>> = vec![None; partitions.len()];
    // Keep what may stay: first up to the even share, then the remainder's extra ones.
    for (i, (_, _, reg)) in partitions.iter().enumerate() {
        if let Some(c) = count.get_mut(&reg.leader) {
            if *c < floor {
                *c += 1;
                leader[i] = Some(reg.leader);
            }
        }
    }
    for (i, (_, _, reg)) in partitions.iter().enumerate() {
        if leader[i].is_some() || extra == 0 {
            continue;
        }
        if let Some(c) = count.get_mut(&reg.leader) {
            if *c == floor {
                *c += 1;
                extra -= 1;
                leader[i] = Some(reg.leader);
            }
        }
    }
    let mut records = Vec::new();
    for (i, (topic_id, partition, reg)) in partitions.iter().enumerate() {
        let chosen = match leader[i] {
            Some(l) => l,
            None => {
                let Some((&least, _)) = count.iter().min_by_key(|(b, c)| (**c, **b)) else {
                    continue;
                };
                if let Some(c) = count.get_mut(&least) {
                    *c += 1;
                }
                least
            }
        };
        let leader_changed = chosen != reg.leader;
        // The order of replicas placed at creation (preferred leader first) is kept.
        if !leader_changed && same_set(&reg.replicas, live) && same_set(&reg.isr, live) {
            continue;
        }
        records.push(MetadataRecord::Partition {
            topic_id: *topic_id,
            partition: *partition,
            replicas: live.to_vec(),
            isr: live.to_vec(),
            leader: chosen,
            leader_epoch: if leader_changed {
                reg.leader_epoch.saturating_add(1)
            } else {
                reg.leader_epoch
            },
            partition_epoch: reg.partition_epoch.saturating_add(1),
        });
    }
    records
}

fn same_set(a: &[i32], sorted: &[i32]) -> bool {
    let mut a = a.to_vec();
    a.sort_unstable();
    a == sorted
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn image_with(partitions: i32, leaders: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::empty();
        let id = Uuid::from_u128(7);
        let mut offset = 0;
        image
            .apply(
                offset,
                &MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id: id,
                },
            )
            .unwrap();
        for p in 0..partitions {
            offset += 1;
            let leader = leaders[p as usize % leaders.len()];
            let r = MetadataRecord::Partition {
                topic_id: id,
                partition: p,
                replicas: leaders.to_vec(),
                isr: leaders.to_vec(),
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            };
            image.apply(offset, &r).unwrap();
        }
        image
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            let offset = image.offset + 1;
            image.apply(offset, r).unwrap();
        }
    }

    fn leaders(image: &MetadataImage) -> Vec<(i32, i32)> {
        let t = image.topic("t").unwrap();
        t.partitions
            .values()
            .map(|p| (p.leader, p.leader_epoch))
            .collect()
    }

    fn share(image: &MetadataImage) -> BTreeMap<i32, usize> {
        let mut m = BTreeMap::new();
        for (l, _) in leaders(image) {
            *m.entry(l).or_default() += 1;
        }
        m
    }

    #[test]
    fn balanced_and_current_changes_nothing() {
        let image = image_with(6, &[1, 2, 3]);
        assert!(balance_leaders(&image, &[1, 2, 3]).is_empty());
        assert!(balance_leaders(&image, &[]).is_empty());
    }

    #[test]
    fn a_fenced_broker_loses_its_leaderships_with_epoch_bumps() {
        let mut image = image_with(6, &[1, 2, 3]);
        let before = leaders(&image);
        let records = balance_leaders(&image, &[1, 3]);
        apply(&mut image, &records);
        let after = leaders(&image);
        assert_eq!(share(&image), BTreeMap::from([(1, 3), (3, 3)]));
        for ((l0, e0), (l1, e1)) in before.iter().zip(&after) {
            if l0 == l1 {
                assert_eq!(e0, e1, "a kept leader keeps its epoch");
            } else {
                assert_eq!(*l0, 2, "only broker 2's partitions move");
                assert_eq!(*e1, e0 + 1, "a moved leader bumps the epoch");
            }
        }
        let t = image.topic("t").unwrap();
        assert!(t
            .partitions
            .values()
            .all(|p| p.replicas == [1, 3] && p.isr == [1, 3]));
        assert!(balance_leaders(&image, &[1, 3]).is_empty(), "settled");
    }

    #[test]
    fn a_returning_or_new_broker_takes_its_share_at_once() {
        let mut image = image_with(6, &[1, 3]);
        let records = balance_leaders(&image, &[1, 2, 3]);
        apply(&mut image, &records);
        assert_eq!(share(&image), BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        let before = leaders(&image);
        let records = balance_leaders(&image, &[1, 2, 3, 4]);
        apply(&mut image, &records);
        let s = share(&image);
        assert_eq!(s.len(), 4, "every broker leads: {s:?}");
        assert!(s.values().all(|c| (1..=2).contains(c)), "{s:?}");
        // Only what the new broker takes moves: the others keep leader and epoch.
        let moved: Vec<_> = before
            .iter()
            .zip(leaders(&image))
            .filter(|(b, a)| b.0 != a.0)
            .collect();
        assert!(!moved.is_empty() && moved.len() <= 2, "{moved:?}");
        assert!(
            moved.iter().all(|(b, a)| a.0 == 4 && a.1 == b.1 + 1),
            "{moved:?}"
        );
    }

    #[test]
    fn uneven_counts_spread_within_one() {
        let mut image = image_with(7, &[5]);
        let records = balance_leaders(&image, &[5, 6, 7]);
        apply(&mut image, &records);
        let s = share(&image);
        assert_eq!(s.values().sum::<usize>(), 7);
        assert!(s.values().all(|c| (2..=3).contains(c)), "{s:?}");
    }
}
