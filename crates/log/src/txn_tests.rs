//! Transactions in the log: the last stable offset with interleaved producers, the aborted
//! transaction index as written and as rebuilt (after a crash, without snapshots, from torn or
//! garbled `.txnindex` files), read_committed reads, retention.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use proptest::prelude::*;

use crate::config::LogConfig;
use crate::log::Log;
use crate::producer_state::{batch_headers, SequenceCheck};
use crate::testutil::producer_batch;
use crate::topic_partition::TopicPartition;
use crate::txn_index::{txn_index_file_path, AbortedTxn, TXN_INDEX_FILE_SUFFIX};

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, segment_bytes: u64) -> Log {
    Log::open(dir, TopicPartition::new("t", 0), config(segment_bytes)).unwrap()
}

/// Appends as the broker does (sequence check first); returns the batch's first offset.
fn produce(log: &mut Log, mut b: Vec<u8>) -> i64 {
    let headers = batch_headers(&b).unwrap();
    assert_eq!(
        log.producer_state().check(&headers),
        Ok(SequenceCheck::Append)
    );
    log.append_as_leader(&mut b, 0, 1_000).unwrap().first_offset
}

fn marker(log: &mut Log, pid: i64, commit: bool) -> i64 {
    log.append_marker(pid, 0, 0, commit, 0, 1_000)
        .unwrap()
        .first_offset
}

/// Everything written is durable and visible: flush, then the high watermark at the end.
fn settle(log: &mut Log) -> i64 {
    let target = log.flush_target();
    target.sync().unwrap();
    log.mark_flushed_target(&target).unwrap();
    let hw = log.log_end_offset();
    log.on_high_watermark_updated(hw);
    hw
}

#[test]
fn the_last_stable_offset_follows_the_earliest_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), 1024 * 1024);
    let a0 = produce(&mut log, producer_batch(1, 0, 0, 2, 1_000, true));
    let plain = produce(&mut log, producer_batch(-1, -1, -1, 1, 1_000, false));
    let b0 = produce(&mut log, producer_batch(2, 0, 0, 1, 1_000, true));
    let hw = settle(&mut log);
    assert_eq!((a0, plain, b0, hw), (0, 2, 3, 4));
    assert_eq!(log.last_stable_offset(hw), a0);
    // A marker not yet under the high watermark still holds the LSO back.
    let abort_a = marker(&mut log, 1, false);
    assert_eq!(log.last_stable_offset(hw), a0);
    assert_eq!(log.last_stable_offset(abort_a), a0);
    let hw = settle(&mut log);
    assert_eq!(log.last_stable_offset(hw), b0);
    let commit_b = marker(&mut log, 2, true);
    let hw = settle(&mut log);
    assert_eq!(commit_b + 1, hw);
    assert_eq!(log.last_stable_offset(hw), hw);
    assert_eq!(
        log.all_aborted_transactions(),
        vec![AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: abort_a,
            last_stable_offset: b0,
        }]
    );
    // read_committed stops at the LSO: with B open again, nothing from B's first batch on.
    let b1 = produce(&mut log, producer_batch(2, 0, 1, 1, 1_000, true));
    let hw = settle(&mut log);
    let lso = log.last_stable_offset(hw);
    assert_eq!(lso, b1);
    let (slice, upper) = log.read_with_upper_bound(0, 1 << 20, lso, true).unwrap();
    assert!(!slice.is_empty());
    assert_eq!(upper, b1);
    assert_eq!(log.aborted_transactions(0, upper).len(), 1);
    // A fetch past the aborted transaction does not get it.
    assert!(log.aborted_transactions(abort_a + 1, upper).is_empty());
}

#[test]
fn markers_check_epochs_and_write_nothing_when_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), 1024 * 1024);
    produce(&mut log, producer_batch(7, 3, 0, 1, 1_000, true));
    let end = log.log_end_offset();
    let e = log.append_marker(7, 2, 0, true, 0, 1_000).unwrap_err();
    assert_eq!(e.kafka_error_code(), 47);
    log.append_marker(7, 3, 5, false, 0, 1_000).unwrap();
    let e = log.append_marker(7, 3, 4, true, 0, 1_000).unwrap_err();
    assert_eq!(e.kafka_error_code(), 52);
    assert_eq!(log.log_end_offset(), end + 1);
    // A marker for a producer the partition never saw is an empty transaction.
    let off = log
        .append_marker(99, 0, 0, false, 0, 1_000)
        .unwrap()
        .first_offset;
    assert_eq!(
        log.all_aborted_transactions().last(),
        Some(&AbortedTxn {
            producer_id: 99,
            first_offset: off,
            last_offset: off,
            last_stable_offset: off + 1
        })
    );
}

/// One step of a random history of transactional and plain producers.
#[derive(Debug, Clone)]
enum Op {
    Data { pid: i64, records: i32 },
    Plain { records: i32 },
    End { pid: i64, commit: bool },
    Roll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0i64..4, 1i32..4).prop_map(|(pid, records)| Op::Data { pid, records }),
        1 => (1i32..3).prop_map(|records| Op::Plain { records }),
        2 => (0i64..4, any::<bool>()).prop_map(|(pid, commit)| Op::End { pid, commit }),
        1 => Just(Op::Roll),
    ]
}

/// Kafka's semantics, kept naively: what the log must agree with.
#[derive(Default)]
struct Model {
    seqs: HashMap<i64, i32>,
    ongoing: BTreeMap<i64, i64>,
    aborted: Vec<AbortedTxn>,
}

impl Model {
    fn lso(&self, hw: i64) -> i64 {
        self.ongoing
            .values()
            .copied()
            .min()
            .map_or(hw, |o| o.min(hw))
    }
}

fn run(log: &mut Log, model: &mut Model, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Data { pid, records } => {
                let seq = model.seqs.entry(*pid).or_insert(0);
                let first = produce(log, producer_batch(*pid, 0, *seq, *records, 1_000, true));
                *seq += records;
                model.ongoing.entry(*pid).or_insert(first);
            }
            Op::Plain { records } => {
                produce(log, producer_batch(-1, -1, -1, *records, 1_000, false));
            }
            Op::End { pid, commit } => {
                let at = marker(log, *pid, *commit);
                let first = model.ongoing.remove(pid).unwrap_or(at);
                if !commit {
                    model.aborted.push(AbortedTxn {
                        producer_id: *pid,
                        first_offset: first,
                        last_offset: at,
                        last_stable_offset: model.ongoing.values().copied().min().unwrap_or(at + 1),
                    });
                }
            }
            Op::Roll => log.roll(1_000).unwrap(),
        }
        let hw = settle(log);
        assert_eq!(log.last_stable_offset(hw), model.lso(hw), "after {op:?}");
    }
}

fn txn_index_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_str()
                .is_some_and(|s| s.ends_with(TXN_INDEX_FILE_SUFFIX))
        })
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The LSO follows Kafka's rule through any interleaving; the aborted index is Kafka's,
    /// and every way of reopening the log (a crash, no snapshots, torn or garbled index
    /// files) gives the same index and the same open transactions back.
    #[test]
    fn index_and_lso_survive_every_reopening(ops in proptest::collection::vec(op(), 1..60), cut in 1usize..34) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        let mut log = open(dir.path(), 700);
        run(&mut log, &mut model, &ops);
        prop_assert_eq!(log.all_aborted_transactions(), model.aborted.clone());
        let hw = log.log_end_offset();
        let written = log.all_aborted_transactions();
        // A crash: no close, so no snapshot at the end; the replay re-derives the tail.
        drop(log);
        let log = open(dir.path(), 700);
        prop_assert_eq!(log.all_aborted_transactions(), written.clone());
        prop_assert_eq!(log.last_stable_offset(hw), model.lso(hw));
        drop(log);
        // No snapshot at all: everything from the batches.
        for e in fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "snapshot") {
                fs::remove_file(p).unwrap();
            }
        }
        let mut log = open(dir.path(), 700);
        prop_assert_eq!(log.all_aborted_transactions(), written.clone());
        prop_assert_eq!(log.last_stable_offset(hw), model.lso(hw));
        log.close().unwrap();
        // Torn and garbled index files: rebuilt, and no segment is lost for it.
        let segments_before = open(dir.path(), 700).segment_count();
        for (i, path) in txn_index_files(dir.path()).into_iter().enumerate() {
            let mut bytes = fs::read(&path).unwrap();
            if i % 2 == 0 {
                bytes.truncate(bytes.len().saturating_sub(cut));
            } else {
                bytes[0] ^= 0x7f;
            }
            fs::write(&path, bytes).unwrap();
        }
        fs::write(txn_index_file_path(dir.path(), 123_456), b"stray").unwrap();
        let log = open(dir.path(), 700);
        prop_assert_eq!(log.all_aborted_transactions(), written);
        prop_assert_eq!(log.segment_count(), segments_before);
        prop_assert!(!txn_index_file_path(dir.path(), 123_456).exists());
    }
}

#[test]
fn retention_takes_a_segments_index_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), 1024 * 1024);
    produce(&mut log, producer_batch(1, 0, 0, 1, 1_000, true));
    marker(&mut log, 1, false);
    log.roll(1_000).unwrap();
    produce(&mut log, producer_batch(2, 0, 0, 1, 1_000, true));
    marker(&mut log, 2, false);
    settle(&mut log);
    assert_eq!(txn_index_files(dir.path()).len(), 2);
    let second = log.segment_base_offsets()[1];
    log.delete_records_before(second).unwrap();
    assert_eq!(txn_index_files(dir.path()).len(), 1);
    assert_eq!(log.all_aborted_transactions().len(), 1);
    // A truncation below a marker takes its entry too.
    log.truncate_to(second + 1).unwrap();
    assert!(log.all_aborted_transactions().is_empty());
    assert!(txn_index_files(dir.path()).is_empty());
    // The truncation took B's marker: its transaction is open again.
    let hw = settle(&mut log);
    assert_eq!(log.last_stable_offset(hw), second);
    marker(&mut log, 2, true);
    // A transaction begun below the log start holds the LSO at the log start.
    let open = produce(&mut log, producer_batch(3, 0, 0, 1, 1_000, true));
    log.roll(1_000).unwrap();
    produce(&mut log, producer_batch(-1, -1, -1, 1, 1_000, false));
    let hw = settle(&mut log);
    assert_eq!(log.last_stable_offset(hw), open);
    log.delete_records_before(open + 1).unwrap();
    assert_eq!(log.last_stable_offset(hw), open + 1);
}

/// What transactions cost the log (run with `--ignored --nocapture`): a read_committed pass
/// over the whole log against a read_uncommitted one, and a reopen that rebuilds the aborted
/// index from every batch against one that trusts it.
#[test]
#[ignore]
fn read_committed_cost() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), 64 * 1024 * 1024);
    let producers = 10i64;
    let txns_per_producer = 1_000;
    let batches_per_txn = 10;
    let mut seqs = vec![0i32; producers as usize];
    for t in 0..txns_per_producer {
        for pid in 0..producers {
            for _ in 0..batches_per_txn {
                let seq = &mut seqs[pid as usize];
                let mut b = producer_batch(pid, 0, *seq, 10, 1_000, true);
                *seq += 10;
                log.append_as_leader(&mut b, 0, 1_000).unwrap();
            }
            log.append_marker(pid, 0, 0, t % 2 == 0, 0, 1_000).unwrap();
        }
    }
    let hw = settle(&mut log);
    let size = log.size_bytes();
    let pass = |committed: bool| {
        let started = Instant::now();
        let (mut at, mut fetches, mut aborted) = (0i64, 0usize, 0usize);
        let max = if committed {
            log.last_stable_offset(hw)
        } else {
            hw
        };
        while at < max {
            let (slice, upper) = log.read_with_upper_bound(at, 1 << 20, max, true).unwrap();
            if slice.is_empty() {
                break;
            }
            if committed {
                aborted += log.aborted_transactions(at, upper).len();
            }
            fetches += 1;
            at = upper;
        }
        (started.elapsed(), fetches, aborted)
    };
    let (uncommitted, fetches, _) = pass(false);
    let (committed, _, aborted) = pass(true);
    log.close().unwrap();
    let t = Instant::now();
    drop(open(dir.path(), 64 * 1024 * 1024));
    let trusted = t.elapsed();
    for path in txn_index_files(dir.path()) {
        fs::write(&path, b"torn").unwrap();
    }
    let t = Instant::now();
    let reopened = open(dir.path(), 64 * 1024 * 1024);
    let rebuilt = t.elapsed();
    assert_eq!(
        reopened.all_aborted_transactions().len(),
        (producers * 500) as usize
    );
    println!(
        "{hw} offsets, {size} bytes, {} aborted transactions: {fetches} fetches of 1 MiB: \
         read_uncommitted {uncommitted:?}, read_committed {committed:?} ({aborted} aborted \
         entries returned); reopen trusting the index {trusted:?}, rebuilding it {rebuilt:?}",
        producers * 500
    );
}

#[test]
fn verify_warns_of_a_damaged_transaction_index_without_failing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut log = open(&dir, 1024 * 1024);
    produce(&mut log, producer_batch(1, 0, 0, 1, 1_000, true));
    marker(&mut log, 1, false);
    log.close().unwrap();
    let clean = crate::verify::verify_log_dir(&dir).unwrap();
    assert!(clean.is_ok() && clean.warnings.is_empty(), "{clean:?}");
    let path = txn_index_file_path(&dir, 0);
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 3);
    fs::write(&path, bytes).unwrap();
    let report = crate::verify::verify_log_dir(&dir).unwrap();
    assert!(
        report.is_ok(),
        "derived data is no damage to the log: {report:?}"
    );
    assert!(report
        .warnings
        .iter()
        .any(|w| w.file == path && w.reason.contains("transaction index")));
}

/// A read counts the records of the data batches it returns from their headers, the same
/// batches its bytes cover; a transaction marker is no record of a consumer's.
#[test]
fn a_read_counts_its_data_records_without_the_markers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), 1024 * 1024);
    let first = producer_batch(1, 0, 0, 3, 1_000, true);
    let first_size = first.len();
    produce(&mut log, first);
    produce(&mut log, producer_batch(1, 0, 3, 2, 1_000, true));
    marker(&mut log, 1, true);
    produce(&mut log, producer_batch(-1, -1, -1, 4, 1_000, false));
    let hw = settle(&mut log);
    assert_eq!(hw, 10, "5 transactional records, a marker, 4 plain records");

    let all = log.read(0, usize::MAX, hw, false).unwrap();
    assert_eq!(all.data_records, 9);
    // Only the first batch fits: its 3 records.
    let one = log.read(0, first_size, hw, false).unwrap();
    assert_eq!(one.size, first_size);
    assert_eq!(one.data_records, 3);
    // From inside the second batch: it is returned whole (2), the marker adds none.
    let tail = log.read(4, usize::MAX, hw, false).unwrap();
    assert_eq!(tail.first_offset, 3);
    assert_eq!(tail.data_records, 6);
    // Just the marker: bytes, but no records.
    let marker_only = log.read(5, usize::MAX, 6, false).unwrap();
    assert!(marker_only.size > 0);
    assert_eq!(marker_only.data_records, 0);
    assert_eq!(log.read(hw, usize::MAX, hw, false).unwrap().data_records, 0);
}
