use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;

const T: Uuid = Uuid::from_u128(7);

fn cfg() -> GroupConfig {
    GroupConfig {
        consumer_session_timeout_ms: 10_000,
        consumer_heartbeat_interval_ms: 1_000,
        ..GroupConfig::default()
    }
}

/// Topic "t" with `partitions`, and any others given.
struct Topics(Vec<(&'static str, TopicMeta)>);

impl TopicSource for Topics {
    fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
    }

    fn names(&self) -> Vec<String> {
        self.0.iter().map(|(n, _)| n.to_string()).collect()
    }
}

fn topics(partitions: i32) -> Topics {
    Topics(vec![("t", TopicMeta { id: T, partitions })])
}

fn parts(a: &Assignment) -> BTreeSet<i32> {
    a.get(&T).cloned().unwrap_or_default()
}

fn owned(ps: &BTreeSet<i32>) -> Assignment {
    let mut a = Assignment::new();
    if !ps.is_empty() {
        a.insert(T, ps.clone());
    }
    a
}

fn join(id: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: id.to_string(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["t".to_string()]),
        owned: Some(Assignment::new()),
        client_id: "c".to_string(),
        client_host: "/127.0.0.1".to_string(),
        ..HeartbeatRequest::default()
    }
}

fn beat(id: &str, epoch: i32, own: &BTreeSet<i32>) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: id.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned(own)),
        ..HeartbeatRequest::default()
    }
}

/// No partition is assigned to one member while another still holds it.
fn assert_exclusive(g: &ConsumerGroup) {
    let members: Vec<&ConsumerMember> = g.members().collect();
    for a in &members {
        for p in parts(&a.assigned) {
            for b in &members {
                if a.member_id != b.member_id {
                    assert!(
                        !b.owns(&T, p),
                        "partition {p} held by {} and {}",
                        a.member_id,
                        b.member_id
                    );
                }
            }
        }
    }
}

#[test]
fn one_member_gets_everything_and_later_heartbeats_carry_no_assignment() {
    let mut g = ConsumerGroup::new();
    let t = topics(4);
    let r = g.heartbeat(join("a"), &cfg(), &t, 0).unwrap();
    assert_eq!(r.member_epoch, 1);
    assert_eq!(parts(r.assignment.as_ref().unwrap()), (0..4).collect());
    assert_eq!(r.heartbeat_interval_ms, 1_000);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    let r = g
        .heartbeat(beat("a", 1, &(0..4).collect()), &cfg(), &t, 1)
        .unwrap();
    assert_eq!(r.member_epoch, 1);
    assert!(r.assignment.is_none());
}

#[test]
fn a_second_member_waits_for_the_first_to_revoke() {
    let mut g = ConsumerGroup::new();
    let t = topics(4);
    let c = cfg();
    g.heartbeat(join("a"), &c, &t, 0).unwrap();
    // b joins: epoch 2; its half is still a's, so it gets nothing yet.
    let rb = g.heartbeat(join("b"), &c, &t, 1).unwrap();
    assert_eq!(rb.member_epoch, 2);
    let b_target = parts(g.target_of("b").unwrap());
    assert_eq!(b_target.len(), 2);
    assert!(parts(rb.assignment.as_ref().unwrap()).is_empty());
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);
    assert_exclusive(&g);
    // a is asked to revoke b's half and keeps its epoch.
    let ra = g
        .heartbeat(beat("a", 1, &(0..4).collect()), &c, &t, 2)
        .unwrap();
    assert_eq!(ra.member_epoch, 1);
    let a_keeps = parts(ra.assignment.as_ref().unwrap());
    assert_eq!(a_keeps.len(), 2);
    assert!(a_keeps.is_disjoint(&b_target));
    assert_exclusive(&g);
    // Until a confirms, b still gets nothing.
    let rb = g
        .heartbeat(beat("b", 2, &BTreeSet::new()), &c, &t, 3)
        .unwrap();
    assert!(rb.assignment.is_none());
    // a confirms by reporting only what it keeps: it moves to epoch 2.
    let ra = g.heartbeat(beat("a", 1, &a_keeps), &c, &t, 4).unwrap();
    assert_eq!(ra.member_epoch, 2);
    // Now b's half is free.
    let rb = g
        .heartbeat(beat("b", 2, &BTreeSet::new()), &c, &t, 5)
        .unwrap();
    assert_eq!(parts(rb.assignment.as_ref().unwrap()), b_target);
    assert_exclusive(&g);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn session_timeout_fences_and_the_rest_take_over() {
    let mut g = ConsumerGroup::new();
    let t = topics(2);
    let c = cfg();
    g.heartbeat(join("a"), &c, &t, 0).unwrap();
    g.heartbeat(beat("a", 1, &(0..2).collect()), &c, &t, 1)
        .unwrap();
    // a hands one partition to b.
    g.heartbeat(join("b"), &c, &t, 1).unwrap();
    let ra = g
        .heartbeat(beat("a", 1, &(0..2).collect()), &c, &t, 2)
        .unwrap();
    let keep = parts(ra.assignment.as_ref().unwrap());
    let ra = g.heartbeat(beat("a", 1, &keep), &c, &t, 3).unwrap();
    let rb = g
        .heartbeat(beat("b", 2, &BTreeSet::new()), &c, &t, 4)
        .unwrap();
    let b_has = parts(rb.assignment.as_ref().unwrap());
    assert_eq!(b_has.len(), 1);
    // b stops heartbeating.
    let mut now = 5;
    let mut a_epoch = ra.member_epoch;
    while now < 20_000 {
        a_epoch = g
            .heartbeat(beat("a", a_epoch, &keep), &c, &t, now)
            .unwrap()
            .member_epoch;
        now += 1_000;
        g.tick(now);
        if g.members().count() == 1 {
            break;
        }
    }
    assert_eq!(g.members().count(), 1);
    let r = g.heartbeat(beat("a", 2, &keep), &c, &t, now).unwrap();
    assert_eq!(r.member_epoch, 3);
    assert_eq!(parts(r.assignment.as_ref().unwrap()), (0..2).collect());
    // The fenced member learns so on its next heartbeat.
    let e = g.heartbeat(beat("b", 2, &b_has), &c, &t, now).unwrap_err();
    assert_eq!(e.code, ResponseError::UnknownMemberId);
}

#[test]
fn leaving_frees_partitions_at_once() {
    let mut g = ConsumerGroup::new();
    let t = topics(2);
    let c = cfg();
    g.heartbeat(join("a"), &c, &t, 0).unwrap();
    g.heartbeat(join("b"), &c, &t, 0).unwrap();
    let mut leave = beat("b", 2, &BTreeSet::new());
    leave.member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
    let r = g.heartbeat(leave, &c, &t, 1).unwrap();
    assert_eq!(r.member_epoch, -1);
    assert_eq!(g.members().count(), 1);
    let r = g
        .heartbeat(beat("a", 1, &(0..2).collect()), &c, &t, 2)
        .unwrap();
    assert_eq!(r.member_epoch, 3);
    assert_eq!(
        parts(&g.members().next().unwrap().assigned),
        (0..2).collect()
    );
}

#[test]
fn epochs_are_checked() {
    let mut g = ConsumerGroup::new();
    let t = topics(1);
    let c = cfg();
    g.heartbeat(join("a"), &c, &t, 0).unwrap();
    let e = g
        .heartbeat(beat("a", 5, &BTreeSet::new()), &c, &t, 1)
        .unwrap_err();
    assert_eq!(e.code, ResponseError::FencedMemberEpoch);
    assert_eq!(g.validate_offset_commit("a", 1, 9), Ok(()));
    assert_eq!(
        g.validate_offset_commit("a", 0, 9),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        g.validate_offset_commit("a", 1, 8),
        Err(ResponseError::UnsupportedVersion)
    );
    assert_eq!(
        g.validate_offset_commit("x", 1, 9),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.validate_offset_commit("", -1, 9),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.validate_offset_fetch(Some("a"), 0),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(g.validate_offset_fetch(None, -1), Ok(()));
    // Kafka skips the member checks only when neither a member id nor an epoch is given.
    assert_eq!(
        g.validate_offset_fetch(Some("x"), -1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.validate_offset_fetch(Some("a"), -1),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        g.validate_offset_fetch(None, 1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(g.validate_offset_fetch(Some("a"), 1), Ok(()));
}

#[test]
fn invalid_requests_get_kafkas_errors() {
    let mut g = ConsumerGroup::new();
    let t = topics(1);
    let c = cfg();
    let mut r = join("a");
    r.subscribed_topic_names = None;
    assert_eq!(
        g.heartbeat(r, &c, &t, 0).unwrap_err().code,
        ResponseError::InvalidRequest
    );
    let mut r = join("a");
    r.rebalance_timeout_ms = -1;
    assert_eq!(
        g.heartbeat(r, &c, &t, 0).unwrap_err().code,
        ResponseError::InvalidRequest
    );
    let mut r = join("");
    r.member_id.clear();
    assert_eq!(
        g.heartbeat(r, &c, &t, 0).unwrap_err().code,
        ResponseError::InvalidRequest
    );
    let mut r = join("a");
    r.server_assignor = Some("sticky".to_string());
    assert_eq!(
        g.heartbeat(r, &c, &t, 0).unwrap_err().code,
        ResponseError::UnsupportedAssignor
    );
    let mut r = join("a");
    r.member_epoch = -3;
    assert_eq!(
        g.heartbeat(r, &c, &t, 0).unwrap_err().code,
        ResponseError::InvalidRequest
    );
    let mut r = join("a");
    r.subscribed_topic_regex = Some("t(".to_string());
    assert_eq!(
        g.heartbeat(r, &c, &t, 0).unwrap_err().code,
        ResponseError::InvalidRegularExpression
    );
    assert!(g.is_empty());
}

#[test]
fn a_static_member_gets_its_partitions_back() {
    let mut g = ConsumerGroup::new();
    let t = topics(2);
    let c = cfg();
    let mut r = join("a1");
    r.instance_id = Some("i".to_string());
    g.heartbeat(r.clone(), &c, &t, 0).unwrap();
    g.heartbeat(join("b"), &c, &t, 0).unwrap();
    let ra = g
        .heartbeat(beat("a1", 1, &(0..2).collect()), &c, &t, 1)
        .unwrap();
    let a_keeps = parts(ra.assignment.as_ref().unwrap());
    g.heartbeat(beat("a1", 1, &a_keeps), &c, &t, 2).unwrap();
    // Another process with the same instance id while a1 is active.
    let mut dup = r.clone();
    dup.member_id = "a2".to_string();
    assert_eq!(
        g.heartbeat(dup.clone(), &c, &t, 3).unwrap_err().code,
        ResponseError::UnreleasedInstanceId
    );
    // a1 leaves for a restart; a2 takes its place and its partitions.
    let mut leave = beat("a1", 2, &a_keeps);
    leave.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
    leave.instance_id = Some("i".to_string());
    assert_eq!(g.heartbeat(leave, &c, &t, 4).unwrap().member_epoch, -2);
    let r2 = g.heartbeat(dup, &c, &t, 5).unwrap();
    assert_eq!(parts(r2.assignment.as_ref().unwrap()), a_keeps);
    assert_exclusive(&g);
}

#[test]
fn new_partitions_bump_the_epoch() {
    let mut g = ConsumerGroup::new();
    let c = cfg();
    g.heartbeat(join("a"), &c, &topics(1), 0).unwrap();
    let r = g
        .heartbeat(beat("a", 1, &[0].into()), &c, &topics(3), 1)
        .unwrap();
    assert_eq!(r.member_epoch, 2);
    assert_eq!(parts(r.assignment.as_ref().unwrap()), (0..3).collect());
}

#[test]
fn a_member_that_never_revokes_is_fenced_after_its_rebalance_timeout() {
    let mut g = ConsumerGroup::new();
    let t = topics(2);
    let c = cfg();
    let mut r = join("a");
    r.rebalance_timeout_ms = 500;
    g.heartbeat(r, &c, &t, 0).unwrap();
    g.heartbeat(join("b"), &c, &t, 0).unwrap();
    g.heartbeat(beat("a", 1, &(0..2).collect()), &c, &t, 100)
        .unwrap();
    g.tick(599);
    assert_eq!(g.members().count(), 2);
    g.tick(600);
    assert_eq!(g.members().count(), 1);
}

proptest! {
    /// Members joining, heartbeating (as well-behaved clients) and leaving in any order never
    /// hold a partition twice, and once everyone heartbeats the group settles with every
    /// partition assigned.
    #[test]
    fn reconciliation_is_exclusive_and_converges(
        steps in proptest::collection::vec((0usize..4, 0u8..10), 1..60),
        partitions in 1i32..9,
    ) {
        let c = cfg();
        let t = topics(partitions);
        let mut g = ConsumerGroup::new();
        // What each client believes: (epoch, owned).
        let mut clients: BTreeMap<String, (i32, BTreeSet<i32>)> = BTreeMap::new();
        let mut now = 0i64;
        let send = |g: &mut ConsumerGroup, clients: &mut BTreeMap<String, (i32, BTreeSet<i32>)>, id: &str, now: i64| {
            let (epoch, own) = clients.get(id).cloned().unwrap_or((0, BTreeSet::new()));
            let req = if epoch == 0 { join(id) } else { beat(id, epoch, &own) };
            match g.heartbeat(req, &c, &t, now) {
                Ok(r) => {
                    let own = r.assignment.as_ref().map(parts).unwrap_or(own);
                    clients.insert(id.to_string(), (r.member_epoch, own));
                }
                Err(_) => {
                    clients.remove(id);
                }
            }
        };
        for (who, action) in steps {
            now += 10;
            let id = format!("m{who}");
            if action == 0 {
                if let Some((epoch, own)) = clients.remove(&id) {
                    let mut leave = beat(&id, epoch, &own);
                    leave.member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
                    let _ = g.heartbeat(leave, &c, &t, now);
                }
            } else {
                send(&mut g, &mut clients, &id, now);
            }
            assert_exclusive(&g);
        }
        for _ in 0..6 {
            let ids: Vec<String> = clients.keys().cloned().collect();
            for id in ids {
                now += 10;
                send(&mut g, &mut clients, &id, now);
                assert_exclusive(&g);
            }
        }
        if !clients.is_empty() {
            prop_assert_eq!(g.state(), ConsumerGroupState::Stable);
            let all: BTreeSet<i32> = clients.values().flat_map(|(_, o)| o.iter().copied()).collect();
            prop_assert_eq!(all, (0..partitions).collect::<BTreeSet<i32>>());
        }
    }
}

#[test]
fn a_regex_subscription_follows_the_topics_that_match() {
    const U: Uuid = Uuid::from_u128(8);
    let mut g = ConsumerGroup::new();
    let c = cfg();
    let mut r = join("a");
    r.subscribed_topic_names = Some(Vec::new());
    r.subscribed_topic_regex = Some("t|u.*".to_string());
    let only_t = topics(2);
    let resp = g.heartbeat(r, &c, &only_t, 0).unwrap();
    assert_eq!(parts(resp.assignment.as_ref().unwrap()), (0..2).collect());
    assert!(g.is_subscribed_to("u1") && !g.is_subscribed_to("tt"));
    // A matching topic appears: the epoch moves and the member gets it too.
    let mut both = topics(2);
    both.0.push((
        "u1",
        TopicMeta {
            id: U,
            partitions: 1,
        },
    ));
    both.0.push((
        "other",
        TopicMeta {
            id: Uuid::from_u128(9),
            partitions: 1,
        },
    ));
    let resp = g
        .heartbeat(beat("a", 1, &(0..2).collect()), &c, &both, 1)
        .unwrap();
    assert_eq!(resp.member_epoch, 2);
    let a = resp.assignment.unwrap();
    assert_eq!(a.get(&U).cloned().unwrap_or_default(), [0].into());
    assert_eq!(a.len(), 2, "the topic that does not match is not assigned");
}

/// Everything of a member the records keep.
type MemberSnapshot = (
    String,
    i32,
    i32,
    MemberState,
    Assignment,
    Assignment,
    Option<String>,
);

#[test]
fn the_records_replayed_give_back_the_group() {
    let mut g = ConsumerGroup::new();
    let t = topics(4);
    let c = cfg();
    let mut log: Vec<Change> = Vec::new();
    let mut r = join("a");
    r.instance_id = Some("ia".to_string());
    g.heartbeat(r, &c, &t, 0).unwrap();
    log.extend(g.take_changes());
    g.heartbeat(join("b"), &c, &t, 1).unwrap();
    log.extend(g.take_changes());
    // a is asked to revoke: its state (unrevoked partitions) is recorded too.
    g.heartbeat(beat("a", 1, &(0..4).collect()), &c, &t, 2)
        .unwrap();
    log.extend(g.take_changes());
    assert!(
        g.take_changes().is_empty(),
        "nothing changed, nothing to write"
    );
    let mut leave = beat("b", 2, &BTreeSet::new());
    leave.member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
    g.heartbeat(join("c"), &c, &t, 3).unwrap();
    log.extend(g.take_changes());
    g.heartbeat(leave, &c, &t, 4).unwrap();
    let last = g.take_changes();
    assert!(last.contains(&Change::Member("b".to_string(), None)));
    log.extend(last);

    let mut p = Persisted::default();
    for ch in log {
        p.apply(ch);
    }
    let mut back = ConsumerGroup::restore(p, &c, 100);
    assert_eq!(back.group_epoch(), g.group_epoch());
    assert_eq!(back.assignment_epoch(), g.assignment_epoch());
    let members = |x: &ConsumerGroup| -> Vec<MemberSnapshot> {
        x.members()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.member_epoch,
                    m.previous_member_epoch,
                    m.state,
                    m.assigned.clone(),
                    m.pending_revocation.clone(),
                    m.instance_id.clone(),
                )
            })
            .collect()
    };
    assert_eq!(members(&back), members(&g));
    assert_eq!(back.target_of("a"), g.target_of("a"));
    assert!(
        back.take_changes().is_empty(),
        "a restored group has nothing new to write"
    );
    // The members carry on: a confirms its revocation as if nothing happened.
    let a_keeps = parts(&g.members().find(|m| m.member_id == "a").unwrap().assigned);
    let r = back.heartbeat(beat("a", 1, &a_keeps), &c, &t, 101).unwrap();
    assert!(r.member_epoch >= 2);
}
