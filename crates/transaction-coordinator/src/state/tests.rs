use proto_kafka::ResponseError;

use super::*;
use crate::records::{decode_value, encode_value};

const MAX_TIMEOUT_MS: i32 = 900_000;
const COORD_EPOCH: i32 = 5;

fn pids(start: i64) -> impl FnMut() -> Result<i64, ResponseError> {
    let mut next = start;
    move || {
        next += 1;
        Ok(next)
    }
}

fn apply(m: &mut TxnMetadata, t: &Transition) {
    m.begin(t);
    m.complete();
}

/// A new id, initialised: producer id 1000, epoch 0.
fn fresh(tv: TransactionVersion) -> TxnMetadata {
    let (mut m, t) = init_new("tx", 60_000, MAX_TIMEOUT_MS, tv, 10, &mut pids(999)).unwrap();
    apply(&mut m, &t);
    m
}

fn tp(topic: &str, p: i32) -> TopicPartition {
    (topic.to_string(), p)
}

fn ongoing(tv: TransactionVersion) -> TxnMetadata {
    let mut m = fresh(tv);
    let t = m
        .add_partitions(1000, 0, &[tp("a", 0), tp("a", 1), tp("b", 0)], 20)
        .unwrap()
        .unwrap();
    apply(&mut m, &t);
    m
}

#[test]
fn a_new_id_gets_a_new_producer_id_at_epoch_0() {
    let (m, t) = init_new("tx", 60_000, MAX_TIMEOUT_MS, 0, 10, &mut pids(41)).unwrap();
    assert_eq!(m.pending, None);
    assert_eq!(t.next.producer_id, 42);
    assert_eq!(t.next.producer_epoch, 0);
    assert_eq!(t.next.state, TxnState::Empty);
    let v = t.record.1.clone().unwrap();
    assert_eq!(v.partitions, None, "Empty is written with null partitions");
    assert_eq!(t.record.0, "tx");
    assert!(t.markers.is_empty());
}

#[test]
fn timeouts_are_checked_against_the_maximum() {
    for bad in [0, -1, MAX_TIMEOUT_MS + 1] {
        assert_eq!(
            init_new("tx", bad, MAX_TIMEOUT_MS, 0, 0, &mut pids(0)).unwrap_err(),
            ResponseError::InvalidTransactionTimeout
        );
        assert_eq!(
            fresh(0)
                .init_producer_id(bad, MAX_TIMEOUT_MS, None, 0, COORD_EPOCH, 0, &mut pids(0))
                .unwrap_err(),
            ResponseError::InvalidTransactionTimeout
        );
    }
}

#[test]
fn reinit_bumps_the_epoch_and_fences_the_older_producer() {
    let mut m = fresh(0);
    let out = m
        .init_producer_id(
            30_000,
            MAX_TIMEOUT_MS,
            None,
            0,
            COORD_EPOCH,
            50,
            &mut pids(0),
        )
        .unwrap();
    let InitOutcome::Ready {
        producer_id,
        producer_epoch,
        transition: Some(t),
    } = out
    else {
        panic!("expected a bump: {out:?}");
    };
    assert_eq!((producer_id, producer_epoch), (1000, 1));
    assert_eq!(t.next.timeout_ms, 30_000);
    apply(&mut m, &t);
    // The producer of epoch 0 is a zombie now.
    assert_eq!(
        m.add_partitions(1000, 0, &[tp("a", 0)], 60).unwrap_err(),
        ResponseError::ProducerFenced
    );
    assert_eq!(
        m.end_txn(1000, 0, TxnResult::Commit, COORD_EPOCH, 60, &mut pids(0))
            .unwrap_err(),
        ResponseError::ProducerFenced
    );
    assert_eq!(
        m.add_partitions(7, 1, &[tp("a", 0)], 60).unwrap_err(),
        ResponseError::InvalidProducerIdMapping
    );
    // KIP-360: the producer of epoch 1 recovers with its id and epoch: bumped, and the
    // last epoch is remembered, so a retry of that call gets the same answer.
    let init = |m: &TxnMetadata, expected| {
        m.init_producer_id(
            30_000,
            MAX_TIMEOUT_MS,
            Some(expected),
            0,
            COORD_EPOCH,
            70,
            &mut pids(0),
        )
    };
    let InitOutcome::Ready {
        producer_epoch: 2,
        transition: Some(t),
        ..
    } = init(&m, (1000, 1)).unwrap()
    else {
        panic!("expected a bump to 2");
    };
    assert_eq!(t.next.last_producer_epoch, 1);
    apply(&mut m, &t);
    let InitOutcome::Ready {
        producer_id: 1000,
        producer_epoch: 2,
        ..
    } = init(&m, (1000, 1)).unwrap()
    else {
        panic!("a retry gets the same epoch");
    };
    // Epochs neither current nor last, and other producer ids, are fenced.
    assert_eq!(
        init(&m, (1000, 0)).unwrap_err(),
        ResponseError::ProducerFenced
    );
    assert_eq!(
        init(&m, (1000, 3)).unwrap_err(),
        ResponseError::ProducerFenced
    );
    assert_eq!(
        init(&m, (77, 2)).unwrap_err(),
        ResponseError::ProducerFenced
    );
    // A new producer without an expected epoch forgets the last one: the old producer's
    // retry is fenced from then on.
    let InitOutcome::Ready {
        transition: Some(t),
        ..
    } = m
        .init_producer_id(
            30_000,
            MAX_TIMEOUT_MS,
            None,
            0,
            COORD_EPOCH,
            80,
            &mut pids(0),
        )
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(t.next.last_producer_epoch, -1);
    apply(&mut m, &t);
    assert_eq!(
        init(&m, (1000, 2)).unwrap_err(),
        ResponseError::ProducerFenced
    );
}

#[test]
fn an_exhausted_epoch_takes_a_new_producer_id() {
    let mut m = fresh(0);
    m.producer_epoch = MAX_USABLE_EPOCH;
    let InitOutcome::Ready {
        producer_id,
        producer_epoch,
        transition: Some(t),
    } = m
        .init_producer_id(
            60_000,
            MAX_TIMEOUT_MS,
            None,
            0,
            COORD_EPOCH,
            50,
            &mut pids(1999),
        )
        .unwrap()
    else {
        panic!("expected a new producer id");
    };
    assert_eq!((producer_id, producer_epoch), (2000, 0));
    assert_eq!(t.next.previous_producer_id, 1000);
}

#[test]
fn init_during_an_ongoing_transaction_aborts_it_with_a_bumped_epoch() {
    let m = ongoing(0);
    let out = m
        .init_producer_id(
            60_000,
            MAX_TIMEOUT_MS,
            None,
            0,
            COORD_EPOCH,
            100,
            &mut pids(0),
        )
        .unwrap();
    let InitOutcome::AbortFirst(t) = out else {
        panic!("expected an abort first: {out:?}");
    };
    assert_eq!(t.next.state, TxnState::PrepareAbort);
    assert_eq!(t.next.producer_epoch, 1);
    assert_eq!(t.markers.len(), 3);
    assert!(t.markers.iter().all(|mk| mk.result == TxnResult::Abort
        && mk.producer_epoch == 1
        && mk.producer_id == 1000
        && mk.coordinator_epoch == COORD_EPOCH));
    // While aborting, the new producer is told to retry.
    let mut m = m;
    apply(&mut m, &t);
    assert_eq!(
        m.init_producer_id(
            60_000,
            MAX_TIMEOUT_MS,
            None,
            0,
            COORD_EPOCH,
            110,
            &mut pids(0)
        )
        .unwrap_err(),
        ResponseError::ConcurrentTransactions
    );
    let done = m.complete_markers(120).unwrap();
    apply(&mut m, &done);
    assert_eq!(m.state, TxnState::CompleteAbort);
    assert!(m.partitions.is_empty());
    let InitOutcome::Ready { producer_epoch, .. } = m
        .init_producer_id(
            60_000,
            MAX_TIMEOUT_MS,
            None,
            0,
            COORD_EPOCH,
            130,
            &mut pids(0),
        )
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(producer_epoch, 2);
}

#[test]
fn fencing_at_the_last_usable_epoch_takes_the_very_last_one() {
    let mut m = ongoing(0);
    m.producer_epoch = MAX_USABLE_EPOCH;
    let t = m.fence_and_abort(COORD_EPOCH, 100).unwrap();
    assert_eq!(t.next.producer_epoch, i16::MAX);
    assert!(t.markers.iter().all(|mk| mk.producer_epoch == i16::MAX));
    apply(&mut m, &t);
    let done = m.complete_markers(110).unwrap();
    apply(&mut m, &done);
    // The next producer of the id gets a new producer id.
    let InitOutcome::Ready {
        producer_id,
        producer_epoch,
        ..
    } = m
        .init_producer_id(
            60_000,
            MAX_TIMEOUT_MS,
            None,
            0,
            COORD_EPOCH,
            120,
            &mut pids(2999),
        )
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((producer_id, producer_epoch), (3000, 0));
}

#[test]
fn add_partitions_starts_and_extends_a_transaction() {
    let mut m = fresh(0);
    let t = m
        .add_partitions(1000, 0, &[tp("a", 0)], 20)
        .unwrap()
        .unwrap();
    assert_eq!(t.next.state, TxnState::Ongoing);
    assert_eq!(t.next.start_timestamp_ms, 20);
    m.begin(&t);
    assert_eq!(
        m.add_partitions(1000, 0, &[tp("a", 1)], 21).unwrap_err(),
        ResponseError::ConcurrentTransactions,
        "a write in flight"
    );
    m.complete();
    assert_eq!(m.add_partitions(1000, 0, &[tp("a", 0)], 30).unwrap(), None);
    let t = m
        .add_partitions(1000, 0, &[tp("a", 0), tp("c", 3)], 30)
        .unwrap()
        .unwrap();
    assert_eq!(
        t.next.start_timestamp_ms, 20,
        "the start stays the first add's"
    );
    apply(&mut m, &t);
    assert_eq!(m.partitions.len(), 2);
    let v = m.to_value();
    let back = TxnMetadata::from_value(
        "tx",
        &decode_value(encode_value(&v, crate::records::VALUE_VERSION_0).unwrap()).unwrap(),
    );
    assert_eq!(back.partitions, m.partitions);
    assert_eq!(back.state, TxnState::Ongoing);
}

#[test]
fn verify_only_reports_each_partition() {
    let m = ongoing(2);
    let got = m
        .verify_partitions(1000, 0, &[tp("a", 0), tp("z", 9)])
        .unwrap();
    assert_eq!(got[0], (tp("a", 0), Ok(())));
    assert_eq!(
        got[1],
        (tp("z", 9), Err(ResponseError::TransactionAbortable))
    );
    assert_eq!(
        m.verify_partitions(1000, 3, &[tp("a", 0)]).unwrap_err(),
        ResponseError::ProducerFenced
    );
    assert_eq!(
        m.verify_partitions(1, 0, &[tp("a", 0)]).unwrap_err(),
        ResponseError::InvalidProducerIdMapping
    );
    // While the transaction ends, the leader is told to retry.
    let mut m = m;
    let t = m
        .end_txn(1000, 0, TxnResult::Commit, COORD_EPOCH, 30, &mut pids(0))
        .unwrap()
        .unwrap();
    apply(&mut m, &t);
    assert_eq!(
        m.verify_partitions(1000, 1, &[tp("a", 0)]).unwrap_err(),
        ResponseError::ConcurrentTransactions
    );
}

#[test]
fn commit_sends_a_marker_to_every_partition_then_completes() {
    let mut m = ongoing(0);
    let offsets = tp("__consumer_offsets", 12);
    let t = m
        .add_partitions(1000, 0, std::slice::from_ref(&offsets), 25)
        .unwrap()
        .unwrap();
    apply(&mut m, &t);
    let t = m
        .end_txn(1000, 0, TxnResult::Commit, COORD_EPOCH, 30, &mut pids(0))
        .unwrap()
        .unwrap();
    assert_eq!(t.next.state, TxnState::PrepareCommit);
    assert_eq!(
        t.next.producer_epoch, 0,
        "transaction version 0 keeps the epoch"
    );
    let targets: Vec<_> = t
        .markers
        .iter()
        .map(|mk| (mk.topic.clone(), mk.partition))
        .collect();
    assert!(targets.contains(&offsets));
    assert_eq!(targets.len(), 4);
    assert!(t.markers.iter().all(|mk| mk.result == TxnResult::Commit));
    apply(&mut m, &t);
    assert_eq!(m.pending_markers(COORD_EPOCH).len(), 4);
    // While preparing: the same end is retried later, the other one is a state error.
    assert_eq!(
        m.end_txn(1000, 0, TxnResult::Commit, COORD_EPOCH, 31, &mut pids(0))
            .unwrap_err(),
        ResponseError::ConcurrentTransactions
    );
    assert_eq!(
        m.end_txn(1000, 0, TxnResult::Abort, COORD_EPOCH, 31, &mut pids(0))
            .unwrap_err(),
        ResponseError::InvalidTxnState
    );
    assert_eq!(
        m.add_partitions(1000, 0, &[tp("a", 0)], 31).unwrap_err(),
        ResponseError::ConcurrentTransactions
    );
    let done = m.complete_markers(40).unwrap();
    assert_eq!(done.next.state, TxnState::CompleteCommit);
    assert!(done.next.partitions.is_empty());
    assert!(done.markers.is_empty());
    apply(&mut m, &done);
    // A retried commit is answered with success; an abort of it is refused.
    assert_eq!(
        m.end_txn(1000, 0, TxnResult::Commit, COORD_EPOCH, 50, &mut pids(0)),
        Ok(None)
    );
    assert_eq!(
        m.end_txn(1000, 0, TxnResult::Abort, COORD_EPOCH, 50, &mut pids(0))
            .unwrap_err(),
        ResponseError::InvalidTxnState
    );
    // The next transaction starts afresh.
    let t = m
        .add_partitions(1000, 0, &[tp("q", 0)], 60)
        .unwrap()
        .unwrap();
    assert_eq!(t.next.partitions.len(), 1);
    assert_eq!(t.next.start_timestamp_ms, 60);
}

#[test]
fn end_txn_errors() {
    let m = fresh(0);
    assert_eq!(
        m.end_txn(1000, 0, TxnResult::Commit, COORD_EPOCH, 30, &mut pids(0))
            .unwrap_err(),
        ResponseError::InvalidTxnState,
        "nothing to commit"
    );
    assert_eq!(
        m.end_txn(1000, 0, TxnResult::Abort, COORD_EPOCH, 30, &mut pids(0))
            .unwrap_err(),
        ResponseError::InvalidTxnState,
        "nothing to abort before transaction version 2"
    );
    let m = ongoing(0);
    assert_eq!(
        m.end_txn(1000, 1, TxnResult::Commit, COORD_EPOCH, 30, &mut pids(0))
            .unwrap_err(),
        ResponseError::ProducerFenced
    );
    assert_eq!(
        m.end_txn(9, 0, TxnResult::Commit, COORD_EPOCH, 30, &mut pids(0))
            .unwrap_err(),
        ResponseError::InvalidProducerIdMapping
    );
    assert_eq!(
        fresh(0).complete_markers(1).unwrap_err(),
        ResponseError::InvalidTxnState
    );
}

#[test]
fn transaction_version_2_bumps_the_epoch_at_every_end() {
    let mut m = ongoing(2);
    let t = m
        .end_txn(1000, 0, TxnResult::Commit, COORD_EPOCH, 30, &mut pids(0))
        .unwrap()
        .unwrap();
    assert_eq!(t.next.producer_epoch, 1);
    assert!(
        t.markers.iter().all(|mk| mk.producer_epoch == 1),
        "markers fence epoch 0"
    );
    apply(&mut m, &t);
    let done = m.complete_markers(40).unwrap();
    apply(&mut m, &done);
    // The retry of that EndTxn comes with the old epoch and is answered with success.
    assert_eq!(
        m.end_txn(1000, 0, TxnResult::Commit, COORD_EPOCH, 50, &mut pids(0)),
        Ok(None)
    );
    assert_eq!(
        m.end_txn(1000, 0, TxnResult::Abort, COORD_EPOCH, 50, &mut pids(0))
            .unwrap_err(),
        ResponseError::InvalidTxnState
    );
    // A new EndTxn at the current epoch with nothing ongoing is fenced, as Kafka's
    // transaction version 2 checks epochs before states.
    assert_eq!(
        m.end_txn(1000, 1, TxnResult::Abort, COORD_EPOCH, 60, &mut pids(0))
            .unwrap_err(),
        ResponseError::ProducerFenced
    );
    // The next transaction ends at a bumped epoch again.
    let t = m
        .add_partitions(1000, 1, &[tp("a", 0)], 70)
        .unwrap()
        .unwrap();
    apply(&mut m, &t);
    let t = m
        .end_txn(1000, 1, TxnResult::Abort, COORD_EPOCH, 80, &mut pids(0))
        .unwrap()
        .unwrap();
    assert_eq!(t.next.producer_epoch, 2);
    apply(&mut m, &t);
    // Retried while its markers are out: retry later.
    assert_eq!(
        m.end_txn(1000, 1, TxnResult::Abort, COORD_EPOCH, 81, &mut pids(0))
            .unwrap_err(),
        ResponseError::ConcurrentTransactions
    );
}

#[test]
fn transaction_version_2_rolls_over_to_a_new_producer_id_at_the_last_epoch() {
    let mut m = ongoing(2);
    m.producer_epoch = MAX_USABLE_EPOCH;
    let t = m
        .end_txn(
            1000,
            MAX_USABLE_EPOCH,
            TxnResult::Abort,
            COORD_EPOCH,
            30,
            &mut pids(4999),
        )
        .unwrap()
        .unwrap();
    assert_eq!(t.next.next_producer_id, 5000);
    assert_eq!(t.next.producer_epoch, i16::MAX);
    apply(&mut m, &t);
    let done = m.complete_markers(40).unwrap();
    apply(&mut m, &done);
    assert_eq!((m.producer_id, m.producer_epoch), (5000, 0));
    assert_eq!(m.previous_producer_id, 1000);
    assert_eq!(m.next_producer_id, -1);
    // The retry under the old producer id is still recognised.
    assert_eq!(
        m.end_txn(
            1000,
            MAX_USABLE_EPOCH,
            TxnResult::Abort,
            COORD_EPOCH,
            50,
            &mut pids(0)
        ),
        Ok(None)
    );
}

#[test]
fn timeout_and_expiration() {
    let m = ongoing(0);
    assert!(!m.timed_out(20 + 60_000));
    assert!(m.timed_out(20 + 60_001));
    let t = m.fence_and_abort(COORD_EPOCH, 70_000).unwrap();
    assert_eq!(t.next.state, TxnState::PrepareAbort);
    assert_eq!(t.next.producer_epoch, 1);
    assert_eq!(t.markers.len(), 3);
    // An ongoing id does not expire; an idle one does, with a tombstone.
    assert_eq!(m.expire(1000, 1_000_000), None);
    let idle = fresh(0);
    assert_eq!(idle.expire(1000, 10 + 999), None);
    let t = idle.expire(1000, 10 + 1000).unwrap();
    assert_eq!(t.record, ("tx".to_string(), None));
    assert_eq!(t.next.state, TxnState::Dead);
}

#[test]
fn a_failed_write_leaves_the_state() {
    let mut m = fresh(0);
    let before = m.clone();
    let t = m
        .add_partitions(1000, 0, &[tp("a", 0)], 20)
        .unwrap()
        .unwrap();
    m.begin(&t);
    m.abandon();
    assert_eq!(m, before);
}

#[test]
fn state_ids_are_kafkas() {
    for (state, id, name) in [
        (TxnState::Empty, 0, "Empty"),
        (TxnState::Ongoing, 1, "Ongoing"),
        (TxnState::PrepareCommit, 2, "PrepareCommit"),
        (TxnState::PrepareAbort, 3, "PrepareAbort"),
        (TxnState::CompleteCommit, 4, "CompleteCommit"),
        (TxnState::CompleteAbort, 5, "CompleteAbort"),
        (TxnState::Dead, 6, "Dead"),
        (TxnState::PrepareEpochFence, 7, "PrepareEpochFence"),
    ] {
        assert_eq!(state.id(), id);
        assert_eq!(TxnState::from_id(id), Some(state));
        assert_eq!(state.name(), name);
    }
    assert_eq!(TxnState::from_id(8), None);
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Init(bool),
        Add(i32),
        End(bool, i16),
        Complete,
        Timeout,
        Expire,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<bool>().prop_map(Op::Init),
            (0i32..4).prop_map(Op::Add),
            (any::<bool>(), -1i16..2).prop_map(|(c, d)| Op::End(c, d)),
            Just(Op::Complete),
            Just(Op::Timeout),
            Just(Op::Expire),
        ]
    }

    proptest! {
        /// Whatever clients do, in any order: no panic, producer ids only grow, an id's epoch
        /// never goes back, only Ongoing and Prepare states hold partitions, markers go
        /// exactly to the partitions of the transaction, and every state survives its record.
        #[test]
        fn transitions_keep_kafkas_invariants(
            tv in prop_oneof![Just(0i16), Just(2i16)],
            value_version in prop_oneof![Just(0i16), Just(1i16)],
            start_epoch in prop_oneof![Just(0i16), Just(MAX_USABLE_EPOCH - 2)],
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let mut next_pid = 1000i64;
            let mut new_pid = || { next_pid += 1; Ok(next_pid) };
            let mut m = fresh(tv);
            m.producer_epoch = start_epoch;
            let mut now = 100i64;
            for op in ops {
                now += 1_000;
                let before = m.clone();
                let t: Option<Transition> = match op {
                    Op::Init(with_expected) => {
                        let expected = with_expected.then_some((m.producer_id, m.producer_epoch));
                        match m.init_producer_id(60_000, MAX_TIMEOUT_MS, expected, tv, COORD_EPOCH, now, &mut new_pid) {
                            Ok(InitOutcome::Ready { transition, .. }) => transition,
                            Ok(InitOutcome::AbortFirst(t)) => Some(t),
                            Err(_) => None,
                        }
                    }
                    Op::Add(p) => m.add_partitions(m.producer_id, m.producer_epoch, &[tp("t", p)], now).ok().flatten(),
                    Op::End(commit, delta) => {
                        let result = if commit { TxnResult::Commit } else { TxnResult::Abort };
                        let epoch = m.producer_epoch.saturating_add(delta);
                        m.end_txn(m.producer_id, epoch, result, COORD_EPOCH, now, &mut new_pid).ok().flatten()
                    }
                    Op::Complete => m.complete_markers(now).ok(),
                    Op::Timeout => {
                        if m.timed_out(now + 100_000) { m.fence_and_abort(COORD_EPOCH, now).ok() } else { None }
                    }
                    Op::Expire => m.expire(1, now),
                };
                let Some(t) = t else { continue };
                if t.next.state == TxnState::Dead {
                    prop_assert!(t.record.1.is_none());
                    break;
                }
                // Markers: exactly the transaction's partitions, at the next epoch, on prepares.
                if matches!(t.next.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                    let targets: BTreeSet<TopicPartition> = t.markers.iter().map(|mk| (mk.topic.clone(), mk.partition)).collect();
                    prop_assert_eq!(&targets, &t.next.partitions);
                    prop_assert!(t.markers.iter().all(|mk| mk.producer_epoch == t.next.producer_epoch));
                } else {
                    prop_assert!(t.markers.is_empty());
                }
                apply(&mut m, &t);
                prop_assert!(m.producer_id >= before.producer_id);
                if m.producer_id == before.producer_id {
                    prop_assert!(m.producer_epoch >= before.producer_epoch, "{:?} -> {:?}", before, m);
                }
                if !matches!(m.state, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort) {
                    prop_assert!(m.partitions.is_empty(), "{:?}", m);
                }
                let back = decode_value(encode_value(&m.to_value(), value_version).unwrap()).unwrap();
                let loaded = TxnMetadata::from_value("tx", &back);
                // Value v0 (below transaction.version 1) has no previous / next producer id or
                // client version, as in Kafka: they do not survive a reload there.
                let mut want = m.clone();
                if value_version == crate::records::VALUE_VERSION_0 {
                    want.client_transaction_version = 0;
                    want.previous_producer_id = -1;
                    want.next_producer_id = -1;
                }
                prop_assert_eq!(TxnMetadata { last_producer_epoch: m.last_producer_epoch, ..loaded }, want);
            }
        }
    }
}
