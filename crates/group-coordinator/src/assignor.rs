//! Server-side partition assignors of KIP-848 consumer groups, after Kafka's `UniformAssignor`
//! and `RangeAssignor` of the new group coordinator.
//!
//! Pure functions: members (with their subscriptions and their previous target assignment,
//! the stickiness hint) and the subscribed topics' partition counts in, one assignment per
//! member out. Every partition of a subscribed topic goes to exactly one member subscribed to
//! that topic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

/// Partitions by topic id, as the consumer protocol carries them.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What an assignor knows of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
}

/// One member as an assignor sees it.
pub struct MemberSpec<'a> {
    pub member_id: &'a str,
    /// Topic names, sorted and without duplicates.
    pub topics: &'a [String],
    /// The member's previous target assignment, kept where balance allows.
    pub current: Option<&'a Assignment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Balanced (partition counts differ by at most one among members with the same
    /// subscription) and sticky: a rebalance moves only the partitions balance requires.
    Uniform,
    /// Per topic, contiguous ranges in member-id order, so that co-partitioned topics are
    /// assigned alike.
    Range,
}

impl Assignor {
    /// Kafka's names (`group.consumer.assignors` takes them or the class names; clients send
    /// the name in `group.remote.assignor`).
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name.trim() {
            "uniform" | "org.apache.kafka.coordinator.group.assignor.UniformAssignor" => {
                Some(Assignor::Uniform)
            }
            "range" | "org.apache.kafka.coordinator.group.assignor.RangeAssignor" => {
                Some(Assignor::Range)
            }
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    /// Assignments keyed by member id; every member gets an entry, possibly empty.
    /// `topics` holds the subscribed topics that exist.
    pub fn assign(
        self,
        members: &[MemberSpec<'_>],
        topics: &BTreeMap<String, TopicMeta>,
    ) -> BTreeMap<String, Assignment> {
        let out = match self {
            Assignor::Uniform => uniform(members, topics),
            Assignor::Range => range(members, topics),
        };
        debug_assert!(check_complete(members, topics, &out));
        out
    }
}

type Tp = (Uuid, i32);

fn uniform(
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicMeta>,
) -> BTreeMap<String, Assignment> {
    // Members in id order: ties break the same way whatever order they arrived in.
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|a, b| members[*a].member_id.cmp(members[*b].member_id));
    let subs: Vec<BTreeSet<Uuid>> = members
        .iter()
        .map(|m| {
            m.topics
                .iter()
                .filter_map(|t| topics.get(t).map(|x| x.id))
                .collect()
        })
        .collect();
    // Every partition of a topic someone subscribes to, with who may take it.
    let mut eligible: BTreeMap<Tp, Vec<usize>> = BTreeMap::new();
    for meta in topics.values() {
        let takers: Vec<usize> = order
            .iter()
            .copied()
            .filter(|i| subs[*i].contains(&meta.id))
            .collect();
        if takers.is_empty() {
            continue;
        }
        for p in 0..meta.partitions.max(0) {
            eligible.insert((meta.id, p), takers.clone());
        }
    }
    let mut owner: HashMap<Tp, usize> = HashMap::with_capacity(eligible.len());
    let mut count = vec![0usize; members.len()];
    // 1. Stickiness: a member keeps what it had and may still have.
    for &i in &order {
        let Some(current) = members[i].current else {
            continue;
        };
        for (topic, parts) in current {
            for &p in parts {
                let tp = (*topic, p);
                if let Some(takers) = eligible.get(&tp) {
                    if takers.contains(&i) && !owner.contains_key(&tp) {
                        owner.insert(tp, i);
                        count[i] += 1;
                    }
                }
            }
        }
    }
    // 2. The rest to the least loaded eligible member, most constrained partitions first.
    let mut free: Vec<(&Tp, &Vec<usize>)> = eligible
        .iter()
        .filter(|(tp, _)| !owner.contains_key(*tp))
        .collect();
    free.sort_by_key(|(tp, takers)| (takers.len(), **tp));
    for (tp, takers) in free {
        if let Some(&i) = takers.iter().min_by_key(|i| count[**i]) {
            owner.insert(*tp, i);
            count[i] += 1;
        }
    }
    // 3. Balance: move a partition from a member to an eligible one holding at least two
    // fewer. Each move lowers the sum of squared counts, so this ends; the bound is a guard.
    let max_passes = eligible.len() + 1;
    for _ in 0..max_passes {
        let mut moved = false;
        for (tp, takers) in &eligible {
            let Some(&from) = owner.get(tp) else { continue };
            let Some(&to) = takers.iter().min_by_key(|i| count[**i]) else {
                continue;
            };
            if count[to] + 1 < count[from] {
                owner.insert(*tp, to);
                count[from] -= 1;
                count[to] += 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for ((topic, p), i) in owner {
        if let Some(a) = out.get_mut(members[i].member_id) {
            a.entry(topic).or_default().insert(p);
        }
    }
    out
}

fn range(
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicMeta>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for (name, meta) in topics {
        let mut takers: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.binary_search(name).is_ok())
            .map(|m| m.member_id)
            .collect();
        if takers.is_empty() || meta.partitions <= 0 {
            continue;
        }
        takers.sort_unstable();
        let n = meta.partitions as usize;
        let per = n / takers.len();
        let extra = n % takers.len();
        let mut next = 0usize;
        for (k, member) in takers.iter().enumerate() {
            let size = per + usize::from(k < extra);
            if size == 0 {
                continue;
            }
            let parts = (next..next + size).map(|p| p as i32);
            if let Some(a) = out.get_mut(*member) {
                a.entry(meta.id).or_default().extend(parts);
            }
            next += size;
        }
    }
    out
}

/// The invariant every assignor keeps: each partition of a subscribed topic is assigned to
/// exactly one member, and that member subscribes to its topic.
pub fn check_complete(
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicMeta>,
    out: &BTreeMap<String, Assignment>,
) -> bool {
    let mut seen: BTreeSet<Tp> = BTreeSet::new();
    for m in members {
        let Some(a) = out.get(m.member_id) else {
            return false;
        };
        for (topic, parts) in a {
            let Some((name, meta)) = topics.iter().find(|(_, t)| t.id == *topic) else {
                return false;
            };
            if m.topics.binary_search(name).is_err() {
                return false;
            }
            for &p in parts {
                if p < 0 || p >= meta.partitions || !seen.insert((*topic, p)) {
                    return false;
                }
            }
        }
    }
    let expected: usize = topics
        .iter()
        .filter(|(name, _)| members.iter().any(|m| m.topics.binary_search(name).is_ok()))
        .map(|(_, t)| t.partitions.max(0) as usize)
        .sum();
    seen.len() == expected
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic_map(counts: &[i32]) -> BTreeMap<String, TopicMeta> {
        counts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    format!("t{i}"),
                    TopicMeta {
                        id: Uuid::from_u128(i as u128 + 1),
                        partitions: *n,
                    },
                )
            })
            .collect()
    }

    fn sizes(out: &BTreeMap<String, Assignment>) -> Vec<usize> {
        out.values()
            .map(|a| a.values().map(|s| s.len()).sum())
            .collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let topics = topic_map(&[7]);
        let subs = vec!["t0".to_string()];
        let members: Vec<MemberSpec> = ["c", "a", "b"]
            .iter()
            .map(|id| MemberSpec {
                member_id: id,
                topics: &subs,
                current: None,
            })
            .collect();
        let out = Assignor::Range.assign(&members, &topics);
        let id = Uuid::from_u128(1);
        let got = |m: &str| out[m][&id].iter().copied().collect::<Vec<_>>();
        assert_eq!(got("a"), vec![0, 1, 2]);
        assert_eq!(got("b"), vec![3, 4]);
        assert_eq!(got("c"), vec![5, 6]);
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let topics = topic_map(&[6]);
        let subs = vec!["t0".to_string()];
        let two: Vec<MemberSpec> = ["a", "b"]
            .iter()
            .map(|id| MemberSpec {
                member_id: id,
                topics: &subs,
                current: None,
            })
            .collect();
        let before = Assignor::Uniform.assign(&two, &topics);
        assert_eq!(sizes(&before), vec![3, 3]);
        let three: Vec<MemberSpec> = ["a", "b", "c"]
            .iter()
            .map(|id| MemberSpec {
                member_id: id,
                topics: &subs,
                current: before.get(*id),
            })
            .collect();
        let after = Assignor::Uniform.assign(&three, &topics);
        assert_eq!(sizes(&after), vec![2, 2, 2]);
        // a and b only gave partitions up; nothing moved between them.
        for m in ["a", "b"] {
            for (t, parts) in &after[m] {
                assert!(parts.is_subset(&before[m][t]), "{m} gained a partition");
            }
        }
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let topics = topic_map(&[4, 2]);
        let only0 = vec!["t0".to_string()];
        let both = vec!["t0".to_string(), "t1".to_string()];
        let members = vec![
            MemberSpec {
                member_id: "a",
                topics: &only0,
                current: None,
            },
            MemberSpec {
                member_id: "b",
                topics: &both,
                current: None,
            },
        ];
        let out = Assignor::Uniform.assign(&members, &topics);
        assert!(!out["a"].contains_key(&Uuid::from_u128(2)));
        assert_eq!(sizes(&out), vec![3, 3]);
    }

    proptest! {
        #[test]
        fn assignors_cover_every_partition_once(
            counts in proptest::collection::vec(0i32..12, 1..4),
            member_subs in proptest::collection::vec(proptest::collection::btree_set(0usize..4, 0..4), 1..7),
            uniform in any::<bool>(),
        ) {
            let topics = topic_map(&counts);
            let names: Vec<Vec<String>> = member_subs
                .iter()
                .map(|s| s.iter().map(|i| format!("t{i}")).collect())
                .collect();
            let ids: Vec<String> = (0..names.len()).map(|i| format!("m{i}")).collect();
            let members: Vec<MemberSpec> = ids
                .iter()
                .zip(&names)
                .map(|(id, t)| MemberSpec { member_id: id, topics: t, current: None })
                .collect();
            let assignor = if uniform { Assignor::Uniform } else { Assignor::Range };
            let first = assignor.assign(&members, &topics);
            prop_assert!(check_complete(&members, &topics, &first));
            // Same subscriptions everywhere: uniform is balanced within one partition.
            if uniform && names.iter().all(|n| *n == names[0]) {
                let s = sizes(&first);
                prop_assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
            }
            // Again with the first result as the stickiness hint and one member fewer.
            let rest: Vec<MemberSpec> = members[1..]
                .iter()
                .map(|m| MemberSpec { member_id: m.member_id, topics: m.topics, current: first.get(m.member_id) })
                .collect();
            let second = assignor.assign(&rest, &topics);
            prop_assert!(check_complete(&rest, &topics, &second));
        }
    }
}
