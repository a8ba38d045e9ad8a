//! The group state machine, step by step with an explicit clock.

use super::*;
use bytes::BytesMut;
use proto_kafka::protocol::{Encodable, StrBytes};
use tokio::sync::oneshot::Receiver;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn cfg(delay_ms: i64) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: delay_ms,
        ..GroupConfig::default()
    }
}

fn protos(names: &[&str]) -> Vec<(String, Bytes)> {
    names
        .iter()
        .map(|n| (n.to_string(), Bytes::from(format!("meta-{n}"))))
        .collect()
}

fn req(member_id: &str, client: &str, protocols: Vec<(String, Bytes)>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: client.to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_string(),
        protocols,
        require_known_member_id: true,
    }
}

fn done<T>(o: Outcome<T>) -> T {
    match o {
        Outcome::Done(v) => v,
        Outcome::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn waiting<T>(o: Outcome<T>) -> Receiver<T> {
    match o {
        Outcome::Wait(rx) => rx,
        Outcome::Done(_) => panic!("expected to wait"),
    }
}

fn answered<T: std::fmt::Debug>(rx: &mut Receiver<T>) -> T {
    rx.try_recv().expect("the waiting request was not answered")
}

fn pending<T: std::fmt::Debug>(rx: &mut Receiver<T>) {
    assert!(
        matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "expected the request to still be waiting"
    );
}

/// KIP-394: the first join gets an id, the second joins with it.
fn join_new(
    g: &mut Group,
    c: &GroupConfig,
    client: &str,
    now: i64,
) -> (String, Receiver<JoinResult>) {
    join_new_with(g, c, client, protos(&["range"]), now)
}

fn join_new_with(
    g: &mut Group,
    c: &GroupConfig,
    client: &str,
    protocols: Vec<(String, Bytes)>,
    now: i64,
) -> (String, Receiver<JoinResult>) {
    let first = done(g.join(req("", client, protocols.clone()), c, now));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert!(
        first.member_id.starts_with(&format!("{client}-")),
        "{}",
        first.member_id
    );
    let id = first.member_id;
    let rx = waiting(g.join(req(&id, client, protocols), c, now));
    (id, rx)
}

fn store(g: &mut Group, c: &GroupConfig, now: i64, result: Result<(), ResponseError>) {
    let effects = g.take_effects();
    assert_eq!(effects.len(), 1, "expected one write");
    let Effect::StoreGroup { then, .. } = effects.into_iter().next().unwrap();
    g.after_store(then, result, c, now);
}

fn sync_req(member: &str, generation: i32, assignments: &[(&str, &[u8])]) -> SyncRequest {
    SyncRequest {
        member_id: member.to_string(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::copy_from_slice(a)))
            .collect(),
    }
}

/// A stable group of one member; returns its id and the generation.
fn stable_single(g: &mut Group, c: &GroupConfig, now: i64) -> (String, i32) {
    let (id, mut rx) = join_new(g, c, "c1", now);
    let r = answered(&mut rx);
    assert_eq!(r.error, None);
    let mut srx = waiting(g.sync(sync_req(&id, r.generation_id, &[(&id, b"a1")]), c, now));
    store(g, c, now, Ok(()));
    assert_eq!(answered(&mut srx).assignment, Bytes::from_static(b"a1"));
    (id, r.generation_id)
}

fn subscription(topics: &[&str]) -> Bytes {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.to_string()))
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&1i16.to_be_bytes());
    sub.encode(&mut buf, 1).unwrap();
    buf.freeze()
}

#[test]
fn single_member_joins_syncs_and_is_stable() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (id, mut rx) = join_new(&mut g, &c, "client", 0);
    let r = answered(&mut rx);
    assert_eq!(r.error, None);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader_id, id);
    assert_eq!(r.member_id, id);
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.members[0].metadata, Bytes::from_static(b"meta-range"));
    assert_eq!(g.state(), GroupState::CompletingRebalance);

    let mut srx = waiting(g.sync(sync_req(&id, 1, &[(&id, b"assignment")]), &c, 5));
    // Not handed out before it is durable.
    pending(&mut srx);
    let effects = g.take_effects();
    let Effect::StoreGroup { value, then } = effects.into_iter().next().unwrap();
    assert_eq!(value.generation, 1);
    assert_eq!(
        value.members[0].assignment,
        Bytes::from_static(b"assignment")
    );
    g.after_store(then, Ok(()), &c, 6);
    let s = answered(&mut srx);
    assert_eq!(s.error, None);
    assert_eq!(s.assignment, Bytes::from_static(b"assignment"));
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.heartbeat(&id, None, 1, 7), Ok(()));
}

#[test]
fn second_member_triggers_a_rebalance_and_a_new_generation() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, gen1) = stable_single(&mut g, &c, 0);
    let (b, mut brx) = join_new(&mut g, &c, "c2", 100);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    pending(&mut brx);
    assert_eq!(
        g.heartbeat(&a, None, gen1, 200),
        Err(ResponseError::RebalanceInProgress)
    );
    let mut arx = waiting(g.join(req(&a, "c1", protos(&["range"])), &c, 300));
    let ra = answered(&mut arx);
    let rb = answered(&mut brx);
    assert_eq!(ra.generation_id, gen1 + 1);
    assert_eq!(rb.generation_id, gen1 + 1);
    // The first member stays the leader and alone gets everyone's metadata.
    assert_eq!(ra.leader_id, a);
    assert_eq!(rb.leader_id, a);
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    // A follower's sync waits for the leader's.
    let mut bs = waiting(g.sync(sync_req(&b, gen1 + 1, &[]), &c, 400));
    pending(&mut bs);
    let mut as_ = waiting(g.sync(sync_req(&a, gen1 + 1, &[(&a, b"A"), (&b, b"B")]), &c, 500));
    store(&mut g, &c, 600, Ok(()));
    assert_eq!(answered(&mut as_).assignment, Bytes::from_static(b"A"));
    assert_eq!(answered(&mut bs).assignment, Bytes::from_static(b"B"));
    assert_eq!(g.state(), GroupState::Stable);
    // A stale generation is refused.
    assert_eq!(
        g.heartbeat(&b, None, gen1, 700),
        Err(ResponseError::IllegalGeneration)
    );
}

#[test]
fn initial_delay_waits_for_more_members_within_the_rebalance_timeout() {
    let c = cfg(3000);
    let mut g = Group::new("g", 0);
    let (_, mut arx) = join_new(&mut g, &c, "a", 0);
    g.tick(&c, 1000);
    pending(&mut arx);
    let (_, mut brx) = join_new(&mut g, &c, "b", 1000);
    // At the end of the first delay a member has arrived: wait one more delay.
    g.tick(&c, 3000);
    pending(&mut arx);
    assert_eq!(g.next_deadline_ms(), Some(6000));
    g.tick(&c, 6000);
    let ra = answered(&mut arx);
    let rb = answered(&mut brx);
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(ra.members.len(), 2);
}

#[test]
fn protocol_selection_follows_votes_among_common_protocols() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, mut arx) = join_new_with(&mut g, &c, "a", protos(&["range", "roundrobin"]), 0);
    let _ = answered(&mut arx);
    let (_, _brx) = join_new_with(&mut g, &c, "b", protos(&["roundrobin", "range"]), 1);
    let (_, _crx) = join_new_with(&mut g, &c, "c", protos(&["roundrobin", "sticky"]), 2);
    let mut arx = waiting(g.join(req(&a, "a", protos(&["range", "roundrobin"])), &c, 3));
    let r = answered(&mut arx);
    // Only roundrobin is supported by all three.
    assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
    assert!(r
        .members
        .iter()
        .all(|m| m.metadata == Bytes::from_static(b"meta-roundrobin")));

    let mut g = Group::new("g2", 0);
    let (a, mut arx) = join_new_with(&mut g, &c, "a", protos(&["range", "roundrobin"]), 0);
    let _ = answered(&mut arx);
    let (_, _b) = join_new_with(&mut g, &c, "b", protos(&["range", "roundrobin"]), 1);
    let (_, _c) = join_new_with(&mut g, &c, "c", protos(&["roundrobin", "range"]), 2);
    let mut arx = waiting(g.join(req(&a, "a", protos(&["range", "roundrobin"])), &c, 3));
    assert_eq!(answered(&mut arx).protocol_name.as_deref(), Some("range"));

    // Nothing in common with the group, or another protocol type: refused.
    let r = done(g.join(req("", "d", protos(&["cooperative-sticky"])), &c, 4));
    assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
    let mut other = req("", "e", protos(&["range"]));
    other.protocol_type = "connect".to_string();
    let r = done(g.join(other, &c, 5));
    assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
    let r = done(g.join(req("", "f", Vec::new()), &c, 6));
    assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
}

#[test]
fn heartbeat_errors() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    assert_eq!(
        g.heartbeat("nobody", None, 0, 0),
        Err(ResponseError::UnknownMemberId)
    );
    let (a, generation) = stable_single(&mut g, &c, 0);
    assert_eq!(g.heartbeat(&a, None, generation, 1), Ok(()));
    assert_eq!(
        g.heartbeat(&a, None, generation + 1, 1),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat("nobody", None, generation, 1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.heartbeat(&a, Some("not-static"), generation, 1),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn expired_session_removes_the_member_and_rebalances() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, gen1) = stable_single(&mut g, &c, 0);
    let (b, mut brx) = join_new(&mut g, &c, "c2", 10);
    let mut arx = waiting(g.join(req(&a, "c1", protos(&["range"])), &c, 20));
    let generation = answered(&mut arx).generation_id;
    let _ = answered(&mut brx);
    assert_eq!(generation, gen1 + 1);
    let _as = waiting(g.sync(sync_req(&a, generation, &[(&a, b"A"), (&b, b"B")]), &c, 30));
    let mut bs = waiting(g.sync(sync_req(&b, generation, &[]), &c, 30));
    store(&mut g, &c, 40, Ok(()));
    let _ = answered(&mut bs);
    // a keeps heartbeating, b goes silent.
    let t = 40 + SESSION_MS as i64 / 2;
    assert_eq!(g.heartbeat(&a, None, generation, t), Ok(()));
    let expiry = 40 + SESSION_MS as i64;
    assert_eq!(g.next_deadline_ms(), Some(expiry));
    g.tick(&c, expiry);
    assert!(!g.has_member(&b));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&a, None, generation, expiry + 1),
        Err(ResponseError::RebalanceInProgress)
    );
    let mut arx = waiting(g.join(req(&a, "c1", protos(&["range"])), &c, expiry + 2));
    let r = answered(&mut arx);
    assert_eq!(r.generation_id, generation + 1);
    assert_eq!(r.members.len(), 1);
}

#[test]
fn member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, gen1) = stable_single(&mut g, &c, 0);
    let (_b, mut brx) = join_new(&mut g, &c, "c2", 100);
    // a keeps heartbeating but never rejoins.
    for t in (1000..REBALANCE_MS as i64).step_by(3000) {
        let _ = g.heartbeat(&a, None, gen1, t);
        g.tick(&c, t);
    }
    pending(&mut brx);
    g.tick(&c, 100 + REBALANCE_MS as i64);
    let r = answered(&mut brx);
    assert_eq!(r.error, None);
    assert_eq!(
        r.members.len(),
        1,
        "only the new member is in the new generation"
    );
    assert!(!g.has_member(&a));
    assert_eq!(r.leader_id, r.member_id);
}

#[test]
fn follower_that_never_syncs_is_removed() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, _) = stable_single(&mut g, &c, 0);
    let (b, mut brx) = join_new(&mut g, &c, "c2", 10);
    let mut arx = waiting(g.join(req(&a, "c1", protos(&["range"])), &c, 20));
    let generation = answered(&mut arx).generation_id;
    let _ = answered(&mut brx);
    let mut as_ = waiting(g.sync(sync_req(&a, generation, &[(&a, b"A"), (&b, b"B")]), &c, 30));
    store(&mut g, &c, 40, Ok(()));
    let _ = answered(&mut as_);
    assert_eq!(g.state(), GroupState::Stable);
    // Both keep their sessions alive with heartbeats, but b never sends SyncGroup.
    for t in (3000..REBALANCE_MS as i64).step_by(3000) {
        assert_eq!(g.heartbeat(&a, None, generation, t), Ok(()));
        assert_eq!(g.heartbeat(&b, None, generation, t), Ok(()));
        g.tick(&c, t);
    }
    assert!(g.has_member(&b));
    g.tick(&c, 20 + REBALANCE_MS as i64);
    assert!(!g.has_member(&b));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn leaving_members_rebalance_and_the_last_one_empties_the_group() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, gen1) = stable_single(&mut g, &c, 0);
    assert_eq!(
        g.leave(&[("nobody".to_string(), None)], &c, 10),
        Ok(vec![Some(ResponseError::UnknownMemberId)])
    );
    assert_eq!(g.leave(&[(a.clone(), None)], &c, 20), Ok(vec![None]));
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation_id(), gen1 + 1);
    let effects = g.take_effects();
    let Effect::StoreGroup { value, then } = effects.into_iter().next().unwrap();
    assert!(value.members.is_empty());
    assert_eq!(value.generation, gen1 + 1);
    assert_eq!(then, AfterStore::Nothing);
    // The protocol type stays: ListGroups still shows a consumer group.
    assert_eq!(g.protocol_type(), Some("consumer"));
}

#[test]
fn leaving_during_a_rebalance_completes_it_for_the_others() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, _) = stable_single(&mut g, &c, 0);
    let (b, mut brx) = join_new(&mut g, &c, "c2", 10);
    pending(&mut brx);
    assert_eq!(g.leave(&[(a, None)], &c, 20), Ok(vec![None]));
    let r = answered(&mut brx);
    assert_eq!(r.error, None);
    assert_eq!(r.leader_id, b);
}

#[test]
fn static_member_rejoins_without_rebalance_and_fences_its_old_id() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let mut r1 = req("", "c1", protos(&["range"]));
    r1.group_instance_id = Some("instance-1".to_string());
    // Static members skip the MEMBER_ID_REQUIRED round trip.
    let mut rx = waiting(g.join(r1, &c, 0));
    let r = answered(&mut rx);
    let old = r.member_id.clone();
    assert!(old.starts_with("instance-1-"), "{old}");
    let generation = r.generation_id;
    let mut srx = waiting(g.sync(
        SyncRequest {
            group_instance_id: Some("instance-1".to_string()),
            ..sync_req(&old, generation, &[(&old, b"A")])
        },
        &c,
        1,
    ));
    store(&mut g, &c, 2, Ok(()));
    let _ = answered(&mut srx);

    // The process restarts: same instance id, no member id, same protocols.
    let mut r2 = req("", "c1", protos(&["range"]));
    r2.group_instance_id = Some("instance-1".to_string());
    let mut rx = waiting(g.join(r2, &c, 100));
    pending(&mut rx);
    assert_eq!(g.state(), GroupState::Stable, "no rebalance");
    store(&mut g, &c, 101, Ok(()));
    let r = answered(&mut rx);
    assert_eq!(r.error, None);
    assert_eq!(r.generation_id, generation);
    let new = r.member_id.clone();
    assert_ne!(new, old);
    // It is told the old leader id, so it does not compute an assignment nobody would get.
    assert_eq!(r.leader_id, old);
    // Its assignment is still there for SyncGroup.
    let s = done(g.sync(
        SyncRequest {
            group_instance_id: Some("instance-1".to_string()),
            ..sync_req(&new, generation, &[])
        },
        &c,
        102,
    ));
    assert_eq!(s.assignment, Bytes::from_static(b"A"));
    // The zombie with the old id is fenced.
    assert_eq!(
        g.heartbeat(&old, Some("instance-1"), generation, 103),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        g.validate_offset_commit(&old, Some("instance-1"), generation, 8, 103),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        g.heartbeat(&new, Some("instance-1"), generation, 103),
        Ok(())
    );

    // Back with different protocols: that needs a rebalance.
    let mut r3 = req("", "c1", protos(&["roundrobin", "range"]));
    r3.group_instance_id = Some("instance-1".to_string());
    let mut rx = waiting(g.join(r3, &c, 200));
    let r = answered(&mut rx);
    assert_eq!(r.generation_id, generation + 1);
    assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
}

#[test]
fn static_member_keeps_its_place_through_a_rebalance_it_misses() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let mut r1 = req("", "s", protos(&["range"]));
    r1.group_instance_id = Some("static".to_string());
    let mut rx = waiting(g.join(r1, &c, 0));
    let s = answered(&mut rx).member_id;
    let (d, mut drx) = join_new(&mut g, &c, "dyn", 10);
    // The static member is alive (heartbeats) but does not rejoin in time.
    for t in (3000..REBALANCE_MS as i64).step_by(3000) {
        let _ = g.heartbeat(&s, Some("static"), 1, t);
        g.tick(&c, t);
    }
    pending(&mut drx);
    g.tick(&c, 10 + REBALANCE_MS as i64);
    let r = answered(&mut drx);
    assert_eq!(r.error, None);
    assert!(
        g.has_member(&s),
        "a static member is not dropped for missing a rebalance"
    );
    assert!(g.has_member(&d));
    // Until its session runs out.
    g.tick(&c, 10 + REBALANCE_MS as i64 + SESSION_MS as i64 + 1);
    assert!(!g.has_member(&s));
}

#[test]
fn pending_member_ids_lapse_after_the_session_timeout() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (x, _) = stable_single(&mut g, &c, 0);
    let (_y, mut yrx) = join_new(&mut g, &c, "y", 10);
    // z gets an id but never joins with it: the rebalance waits for it...
    let id_only = done(g.join(req("", "z", protos(&["range"])), &c, 11));
    assert_eq!(id_only.error, Some(ResponseError::MemberIdRequired));
    let mut xrx = waiting(g.join(req(&x, "c1", protos(&["range"])), &c, 12));
    pending(&mut xrx);
    pending(&mut yrx);
    // ...until the id lapses with the session timeout it asked for.
    g.tick(&c, 11 + SESSION_MS as i64);
    assert_eq!(answered(&mut xrx).members.len(), 2);
    let _ = answered(&mut yrx);
    let late = done(g.join(
        req(&id_only.member_id, "z", protos(&["range"])),
        &c,
        12 + SESSION_MS as i64,
    ));
    assert_eq!(late.error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn group_size_is_bounded() {
    let c = GroupConfig {
        max_size: 2,
        ..cfg(0)
    };
    let mut g = Group::new("g", 0);
    let (a, _) = stable_single(&mut g, &c, 0);
    let (_b, _brx) = join_new(&mut g, &c, "b", 1);
    let _arx = waiting(g.join(req(&a, "c1", protos(&["range"])), &c, 2));
    let r = done(g.join(req("", "c", protos(&["range"])), &c, 3));
    assert_eq!(r.error, Some(ResponseError::GroupMaxSizeReached));
    // Members already in are still welcome.
    let r = done(g.join(req(&a, "c1", protos(&["range"])), &c, 4));
    assert_eq!(r.error, None);
}

#[test]
fn leader_rejoin_rebalances_but_an_unchanged_follower_gets_the_current_generation() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, _) = stable_single(&mut g, &c, 0);
    let (b, mut brx) = join_new(&mut g, &c, "c2", 10);
    let mut arx = waiting(g.join(req(&a, "c1", protos(&["range"])), &c, 20));
    let generation = answered(&mut arx).generation_id;
    let _ = answered(&mut brx);
    let _as = waiting(g.sync(sync_req(&a, generation, &[(&a, b"A"), (&b, b"B")]), &c, 30));
    let _bs = waiting(g.sync(sync_req(&b, generation, &[]), &c, 30));
    store(&mut g, &c, 40, Ok(()));
    let r = done(g.join(req(&b, "c2", protos(&["range"])), &c, 50));
    assert_eq!(r.generation_id, generation);
    assert!(r.members.is_empty());
    assert_eq!(g.state(), GroupState::Stable);
    let _arx = waiting(g.join(req(&a, "c1", protos(&["range"])), &c, 60));
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn sync_errors_and_failed_store() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, mut arx) = join_new(&mut g, &c, "c1", 0);
    let generation = answered(&mut arx).generation_id;
    let r = done(g.sync(sync_req(&a, generation + 5, &[]), &c, 1));
    assert_eq!(r.error, Some(ResponseError::IllegalGeneration));
    let r = done(g.sync(sync_req("nobody", generation, &[]), &c, 1));
    assert_eq!(r.error, Some(ResponseError::UnknownMemberId));
    let r = done(g.sync(
        SyncRequest {
            protocol_name: Some("other".to_string()),
            ..sync_req(&a, generation, &[])
        },
        &c,
        1,
    ));
    assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
    // The assignment cannot be written: the members learn it and the group rebalances.
    let mut srx = waiting(g.sync(sync_req(&a, generation, &[(&a, b"A")]), &c, 2));
    store(&mut g, &c, 3, Err(ResponseError::NotCoordinator));
    assert_eq!(
        answered(&mut srx).error,
        Some(ResponseError::NotCoordinator)
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn offset_commit_checks_member_and_generation() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    // An empty group takes simple commits (no generation), whatever member id they carry,
    // as Kafka's ClassicGroup does: librdkafka's consumer-protocol client sends the id it
    // made for itself even when it never joined.
    assert_eq!(g.validate_offset_commit("", None, -1, 8, 0), Ok(()));
    assert_eq!(
        g.validate_offset_commit("self-made-id", None, -1, 9, 0),
        Ok(())
    );
    assert_eq!(
        g.validate_offset_commit("self-made-id", None, 0, 9, 0),
        Err(ResponseError::UnknownMemberId),
        "with a generation it must be a member"
    );
    let (a, mut arx) = join_new(&mut g, &c, "c1", 0);
    let generation = answered(&mut arx).generation_id;
    // Between JoinGroup and SyncGroup.
    assert_eq!(
        g.validate_offset_commit(&a, None, generation, 8, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    let _srx = waiting(g.sync(sync_req(&a, generation, &[(&a, b"A")]), &c, 2));
    store(&mut g, &c, 3, Ok(()));
    assert_eq!(g.validate_offset_commit(&a, None, generation, 8, 4), Ok(()));
    assert_eq!(
        g.validate_offset_commit("stranger", None, generation, 8, 4),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.validate_offset_commit(&a, None, generation - 1, 8, 4),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.validate_offset_commit("", None, -1, 8, 4),
        Err(ResponseError::UnknownMemberId),
        "only members commit for a group with members"
    );
    // A commit counts as a heartbeat.
    g.tick(&c, 4 + SESSION_MS as i64 - 1);
    assert!(g.has_member(&a));
}

#[test]
fn later_record_wins_when_commits_complete_out_of_order() {
    let mut g = Group::new("g", 0);
    let commit = |offset, record_offset| CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
        record_offset,
    };
    g.apply_offset("t", 0, commit(20, 11));
    g.apply_offset("t", 0, commit(10, 10));
    assert_eq!(g.offsets()[&("t".to_string(), 0)].offset, 20);
    g.apply_offset("t", 0, commit(30, 12));
    assert_eq!(g.offsets()[&("t".to_string(), 0)].offset, 30);
}

#[test]
fn delete_and_offset_delete_rules() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, mut arx) = join_new_with(
        &mut g,
        &c,
        "c1",
        vec![("range".to_string(), subscription(&["orders"]))],
        0,
    );
    let generation = answered(&mut arx).generation_id;
    let _srx = waiting(g.sync(sync_req(&a, generation, &[(&a, b"A")]), &c, 1));
    store(&mut g, &c, 2, Ok(()));
    assert_eq!(g.mark_deleted(3), Err(ResponseError::NonEmptyGroup));
    let parts = vec![("orders".to_string(), 0), ("payments".to_string(), 0)];
    assert_eq!(
        g.offsets_deletable(&parts),
        Ok(vec![Some(ResponseError::GroupSubscribedToTopic), None])
    );
    assert!(g.is_subscribed_to("orders"));
    assert!(!g.is_subscribed_to("payments"));
    g.apply_offset(
        "orders",
        0,
        CommittedOffset {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
            record_offset: 1,
        },
    );
    let _ = g.leave(&[(a, None)], &c, 4);
    let _ = g.take_effects();
    assert_eq!(g.offsets_deletable(&parts), Ok(vec![None, None]));
    assert_eq!(g.mark_deleted(5), Ok(vec![("orders".to_string(), 0)]));
    assert_eq!(g.state(), GroupState::Dead);
    assert_eq!(g.mark_deleted(6), Err(ResponseError::GroupIdNotFound));
}

#[test]
fn offsets_expire_after_retention_once_the_group_is_empty() {
    let c = cfg(0);
    let day = 24 * 3_600_000;
    let commit = |ts| CommittedOffset {
        offset: 1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: ts,
        record_offset: 0,
    };
    // A group that only stores offsets: counted from each commit.
    let mut simple = Group::new("s", 0);
    simple.apply_offset("t", 0, commit(0));
    simple.apply_offset("t", 1, commit(5 * day));
    assert_eq!(
        simple.expire_offsets(7 * day, 7 * day),
        vec![("t".to_string(), 0)]
    );
    assert!(!simple.mark_dead_if_unused(7 * day));
    assert_eq!(
        simple.expire_offsets(7 * day, 12 * day),
        vec![("t".to_string(), 1)]
    );
    assert!(simple.mark_dead_if_unused(12 * day));

    // A consumer group: nothing expires while it has members; then from when it emptied.
    let mut g = Group::new("g", 0);
    let (a, _) = stable_single(&mut g, &c, 0);
    g.apply_offset("t", 0, commit(0));
    assert!(g.expire_offsets(7 * day, 30 * day).is_empty());
    let _ = g.leave(&[(a, None)], &c, day);
    assert!(g.expire_offsets(7 * day, 7 * day).is_empty());
    assert_eq!(
        g.expire_offsets(7 * day, 8 * day),
        vec![("t".to_string(), 0)]
    );
}

#[test]
fn restored_group_is_stable_with_its_members_and_their_sessions() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, generation) = stable_single(&mut g, &c, 0);
    let value = g.group_value(None);
    let restored = Group::restore("g", Some(value), BTreeMap::new(), 1000);
    let mut r = restored;
    assert_eq!(r.state(), GroupState::Stable);
    assert_eq!(r.generation_id(), generation);
    assert_eq!(r.leader_id(), Some(a.as_str()));
    // A client that was running carries on with its generation.
    assert_eq!(r.heartbeat(&a, None, generation, 1001), Ok(()));
    let s = done(r.sync(sync_req(&a, generation, &[]), &c, 1002));
    assert_eq!(s.assignment, Bytes::from_static(b"a1"));
    // One that does not come back expires.
    r.tick(&c, 1002 + SESSION_MS as i64);
    assert_eq!(r.member_count(), 0);

    let empty = Group::restore(
        "e",
        Some(GroupValue {
            protocol_type: "consumer".into(),
            generation: 7,
            ..Default::default()
        }),
        BTreeMap::new(),
        0,
    );
    assert_eq!(empty.state(), GroupState::Empty);
    assert_eq!(empty.generation_id(), 7);
}

#[test]
fn subscription_metadata_parses_across_versions() {
    assert_eq!(
        parse_subscription(&subscription(&["a", "b"])),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    // Version 0: topics and user data only.
    let mut v0 = BytesMut::new();
    v0.extend_from_slice(&0i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("x")])
        .encode(&mut v0, 0)
        .unwrap();
    assert_eq!(parse_subscription(&v0), Some(vec!["x".to_string()]));
    assert_eq!(parse_subscription(&[0]), None);
    assert_eq!(parse_subscription(&[0, 1, 0, 0, 0, 9]), None);
}

#[test]
fn retried_join_answers_the_superseded_one() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let (a, _) = stable_single(&mut g, &c, 0);
    let (_b, _brx) = join_new(&mut g, &c, "c2", 10);
    let mut first = waiting(g.join(req(&a, "c1", protos(&["range"])), &c, 20));
    // Completed by the join itself (everyone is in): take a fresh rebalance instead.
    let _ = first.try_recv();
    let (_c, _crx) = join_new(&mut g, &c, "c3", 30);
    let mut one = waiting(g.join(req(&a, "c1", protos(&["range"])), &c, 40));
    let _two = waiting(g.join(req(&a, "c1", protos(&["range"])), &c, 41));
    assert_eq!(
        answered(&mut one).error,
        Some(ResponseError::RebalanceInProgress)
    );
}
