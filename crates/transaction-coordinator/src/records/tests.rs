use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn value(state: TxnState, partitions: Option<Vec<TopicPartitions>>) -> TxnValue {
    TxnValue {
        producer_id: 3,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: 1,
        timeout_ms: 60_000,
        state,
        partitions,
        last_update_timestamp_ms: 100,
        start_timestamp_ms: 50,
        client_transaction_version: 0,
    }
}

fn one_topic() -> Option<Vec<TopicPartitions>> {
    Some(vec![TopicPartitions {
        topic: "a".into(),
        partitions: vec![0, 1],
    }])
}

#[test]
fn key_golden_bytes() {
    let k = encode_key("t1").unwrap();
    assert_eq!(&k[..], &[0, 0, 0, 2, b't', b'1']);
    assert_eq!(decode_key(k).unwrap(), "t1");
}

#[test]
fn value_v0_golden_bytes() {
    let v = value(TxnState::Ongoing, one_topic());
    let b = encode_value(&v, VALUE_VERSION_0).unwrap();
    #[rustfmt::skip]
    let want: &[u8] = &[
        0, 0,                         // version 0
        0, 0, 0, 0, 0, 0, 0, 3,       // producer id
        0, 1,                         // epoch
        0, 0, 0xea, 0x60,             // timeout 60000
        1,                            // Ongoing
        0, 0, 0, 1,                   // one topic
        0, 1, b'a',                   // "a"
        0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, // partitions 0, 1
        0, 0, 0, 0, 0, 0, 0, 100,     // last update
        0, 0, 0, 0, 0, 0, 0, 50,      // start
    ];
    assert_eq!(&b[..], want);
    assert_eq!(decode_value(b).unwrap(), v);
}

#[test]
fn value_v1_golden_bytes_with_tagged_fields() {
    let mut v = value(TxnState::PrepareCommit, one_topic());
    v.client_transaction_version = 2;
    let b = encode_value(&v, VALUE_VERSION_1).unwrap();
    #[rustfmt::skip]
    let want: &[u8] = &[
        0, 1,                         // version 1 (flexible)
        0, 0, 0, 0, 0, 0, 0, 3,
        0, 1,
        0, 0, 0xea, 0x60,
        2,                            // PrepareCommit
        2,                            // compact array: one topic
        2, b'a',                      // compact string "a"
        3, 0, 0, 0, 0, 0, 0, 0, 1,    // compact array of two partitions
        0,                            // the topic's tagged fields
        0, 0, 0, 0, 0, 0, 0, 100,
        0, 0, 0, 0, 0, 0, 0, 50,
        1, 2, 2, 0, 2,                // one tagged field: tag 2, 2 bytes, ClientTransactionVersion 2
    ];
    assert_eq!(&b[..], want);
    assert_eq!(decode_value(b).unwrap(), v);
}

#[test]
fn empty_state_has_null_partitions_in_both_versions() {
    let v = value(TxnState::Empty, None);
    for version in [VALUE_VERSION_0, VALUE_VERSION_1] {
        let b = encode_value(&v, version).unwrap();
        assert_eq!(decode_value(b).unwrap(), v);
    }
    let b = encode_value(&v, VALUE_VERSION_0).unwrap();
    assert_eq!(&b[17..21], &[0xff, 0xff, 0xff, 0xff], "v0 null array is -1");
}

#[test]
fn v1_round_trips_every_tagged_field_and_v0_drops_them() {
    let mut v = value(TxnState::CompleteAbort, Some(vec![]));
    v.previous_producer_id = 7;
    v.next_producer_id = 9;
    v.client_transaction_version = 2;
    let b = encode_value(&v, VALUE_VERSION_1).unwrap();
    assert_eq!(decode_value(b).unwrap(), v);
    let b0 = decode_value(encode_value(&v, VALUE_VERSION_0).unwrap()).unwrap();
    assert_eq!(b0.previous_producer_id, -1);
    assert_eq!(b0.next_producer_id, -1);
    assert_eq!(b0.client_transaction_version, 0);
}

#[test]
fn unknown_tags_are_skipped() {
    let v = value(TxnState::Ongoing, one_topic());
    let mut b = encode_value(&v, VALUE_VERSION_1).unwrap().to_vec();
    // Replace the empty top-level tag section with one unknown tag 9 of 3 bytes.
    assert_eq!(b.pop(), Some(0));
    b.extend_from_slice(&[1, 9, 3, 1, 2, 3]);
    assert_eq!(decode_value(Bytes::from(b)).unwrap(), v);
}

#[test]
fn hostile_inputs_are_errors() {
    // Unknown versions and states.
    assert!(matches!(
        decode_value(Bytes::from_static(&[0, 2])),
        Err(RecordError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        decode_key(Bytes::from_static(&[0, 1, 0, 0])),
        Err(RecordError::UnsupportedVersion { .. })
    ));
    let mut b = encode_value(&value(TxnState::Ongoing, None), 0)
        .unwrap()
        .to_vec();
    b[16] = 42;
    assert_eq!(
        decode_value(Bytes::from(b)),
        Err(RecordError::UnknownState(42))
    );
    // A count of 2^31-1 topics in a few bytes allocates nothing and is refused.
    let mut b = encode_value(&value(TxnState::Ongoing, Some(vec![])), 0)
        .unwrap()
        .to_vec();
    b[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
    assert_eq!(decode_value(Bytes::from(b)), Err(RecordError::Truncated));
    // A negative count other than -1.
    let mut b = encode_value(&value(TxnState::Ongoing, Some(vec![])), 0)
        .unwrap()
        .to_vec();
    b[17..21].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(decode_value(Bytes::from(b)).is_err());
    // A varint that never ends.
    let mut b = encode_value(&value(TxnState::Ongoing, None), 1)
        .unwrap()
        .to_vec();
    b.truncate(17);
    b.extend_from_slice(&[0xff; 8]);
    assert!(decode_value(Bytes::from(b)).is_err());
    // Truncation at every length is an error, never a panic.
    let full = encode_value(&value(TxnState::Ongoing, one_topic()), 1).unwrap();
    for n in 0..full.len() {
        assert!(decode_value(full.slice(..n)).is_err(), "length {n}");
    }
    assert_eq!(
        encode_key(&"x".repeat(40_000)),
        Err(RecordError::TooLong("transactional id"))
    );
}

fn arb_state() -> impl Strategy<Value = TxnState> {
    (0i8..8).prop_map(|i| TxnState::from_id(i).unwrap())
}

fn arb_value() -> impl Strategy<Value = TxnValue> {
    (
        any::<i64>(),
        any::<i16>(),
        any::<i32>(),
        arb_state(),
        proptest::option::of(proptest::collection::vec(
            (
                "[a-z._-]{1,20}",
                proptest::collection::vec(any::<i32>(), 0..5),
            )
                .prop_map(|(topic, partitions)| TopicPartitions { topic, partitions }),
            0..4,
        )),
        any::<i64>(),
        any::<i64>(),
        (any::<i64>(), any::<i64>(), any::<i16>()),
    )
        .prop_map(
            |(pid, epoch, timeout, state, partitions, lu, st, tags)| TxnValue {
                producer_id: pid,
                previous_producer_id: tags.0,
                next_producer_id: tags.1,
                producer_epoch: epoch,
                timeout_ms: timeout,
                state,
                partitions,
                last_update_timestamp_ms: lu,
                start_timestamp_ms: st,
                client_transaction_version: tags.2,
            },
        )
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_value(Bytes::from(bytes.clone()));
        let _ = decode_key(Bytes::from(bytes));
    }

    #[test]
    fn mutated_values_never_panic(v in arb_value(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut b = encode_value(&v, VALUE_VERSION_1).unwrap().to_vec();
        for (i, x) in flips {
            let n = b.len();
            b[i % n] = x;
        }
        let _ = decode_value(Bytes::from(b));
    }

    #[test]
    fn values_round_trip(v in arb_value()) {
        prop_assert_eq!(decode_value(encode_value(&v, VALUE_VERSION_1).unwrap()).unwrap(), v.clone());
        let v0 = TxnValue { previous_producer_id: -1, next_producer_id: -1, client_transaction_version: 0, ..v.clone() };
        prop_assert_eq!(decode_value(encode_value(&v, VALUE_VERSION_0).unwrap()).unwrap(), v0);
    }
}
