//! Damaged files: recovery cuts only a torn tail written after the last fsync, never
//! acknowledged (synced) data, and `verify` names the first bad batch.

use std::fs;
use std::path::Path;

use crate::batch::validate_batches;
use crate::config::LogConfig;
use crate::error::LogError;
use crate::files::{index_file_path, log_file_path};
use crate::log::Log;
use crate::testutil::{build_batch, BatchSpec};
use crate::topic_partition::TopicPartition;
use crate::verify::verify_log_dir;

const NOW_MS: i64 = 1_700_000_000_000;

fn tp() -> TopicPartition {
    TopicPartition::new("topic", 0)
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// A partition directory `topic-0` under `root` with `batches` batches of 2 records, closed
/// cleanly (so its recovery point is its end). Returns the dir and each batch as stored.
fn closed_log(root: &Path, batches: usize) -> (std::path::PathBuf, Vec<Vec<u8>>) {
    let dir = root.join("topic-0");
    let mut log = Log::open(&dir, tp(), small_config()).unwrap();
    let mut written = Vec::new();
    for i in 0..batches {
        let mut b = build_batch(&BatchSpec {
            records: 2,
            base_timestamp: NOW_MS + i as i64,
            value_size_bytes: 40,
            ..Default::default()
        });
        log.append_as_leader(&mut b, 3, NOW_MS).unwrap();
        written.push(b);
    }
    log.close().unwrap();
    (dir, written)
}

/// Where each batch sits: (segment base, byte position in that segment).
fn layout(dir: &Path) -> Vec<(i64, u64, i64)> {
    let log = Log::open(dir, tp(), small_config()).unwrap();
    let mut out = Vec::new();
    for seg in log.segments() {
        let bytes = fs::read(seg.log_path()).unwrap();
        let mut pos = 0usize;
        for h in validate_batches(&bytes).unwrap() {
            out.push((seg.base_offset(), pos as u64, h.base_offset));
            pos += h.size_bytes();
        }
    }
    drop(log);
    out
}

fn last_batch_of_first_segment(batches: &[(i64, u64, i64)]) -> (i64, u64, i64) {
    let first = batches[0].0;
    *batches.iter().rev().find(|b| b.0 == first).unwrap()
}

fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                fs::read(e.path()).unwrap(),
            )
        })
        .filter(|(n, _)| n.ends_with(".log"))
        .collect();
    files.sort();
    files
}

fn corrupt_reason(result: Result<Log, LogError>) -> String {
    match result {
        Err(LogError::Corrupt { path, reason }) => format!("{}: {reason}", path.display()),
        Err(e) => panic!("expected a corrupt-log error, got {e}"),
        Ok(_) => panic!("expected a corrupt-log error, the log opened"),
    }
}

#[test]
fn crc_damage_below_the_recovery_point_is_kept_not_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, written) = closed_log(tmp.path(), 60);
    let batches = layout(&dir);
    let (seg, pos, offset) = batches[5];
    let path = log_file_path(&dir, seg);
    let mut bytes = fs::read(&path).unwrap();
    for b in &mut bytes[pos as usize + 70..pos as usize + 102] {
        *b ^= 0xff; // 32 bytes of payload: the CRC fails, the framing holds
    }
    fs::write(&path, &bytes).unwrap();
    // The index must be rebuilt, so recovery reads (and checks) the whole segment.
    fs::remove_file(index_file_path(&dir, seg)).unwrap();
    let before = all_files(&dir);
    let log = Log::open(&dir, tp(), small_config()).unwrap();
    assert_eq!(
        log.log_end_offset(),
        120,
        "nothing after the damage is lost"
    );
    assert_eq!(all_files(&dir), before, "no segment file changed");
    drop(log);

    let report = verify_log_dir(&dir).unwrap();
    assert!(!report.is_ok());
    let first = &report.problems[0];
    assert_eq!(first.file, path);
    assert_eq!(first.position, Some(pos));
    assert_eq!(first.offset, Some(offset));
    assert!(first.reason.contains("CRC"), "{first}");
    assert_eq!(report.next_offset, 120);
    assert_eq!(report.batches, written.len() as u64);
}

#[test]
fn broken_batch_length_below_the_recovery_point_refuses_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = closed_log(tmp.path(), 60);
    let batches = layout(&dir);
    let segments_before: Vec<i64> = {
        let mut b: Vec<i64> = batches.iter().map(|b| b.0).collect();
        b.dedup();
        b
    };
    // The last batch of the first (sealed) segment claims to be far longer than it is. (Open
    // reads a sealed segment's headers only after its last index entry; damage further up is
    // found by verify or by the reads that reach it.)
    let (seg, pos, offset) = last_batch_of_first_segment(&batches);
    let path = log_file_path(&dir, seg);
    let mut bytes = fs::read(&path).unwrap();
    bytes[pos as usize + 8..pos as usize + 12].copy_from_slice(&1_000_000i32.to_be_bytes());
    fs::write(&path, &bytes).unwrap();
    let before = all_files(&dir);

    let reason = corrupt_reason(Log::open(&dir, tp(), small_config()));
    assert!(reason.contains(&path.display().to_string()), "{reason}");
    assert!(reason.contains(&format!("at byte {pos}")), "{reason}");
    assert!(reason.contains("recovery point"), "{reason}");
    assert_eq!(all_files(&dir), before, "nothing truncated or deleted");
    for base in segments_before {
        assert!(log_file_path(&dir, base).exists());
    }

    let report = verify_log_dir(&dir).unwrap();
    let first = &report.problems[0];
    assert_eq!(
        (first.file.clone(), first.position, first.offset),
        (path, Some(pos), Some(offset))
    );
}

#[test]
fn rewritten_base_offset_below_the_recovery_point_refuses_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = closed_log(tmp.path(), 60);
    let batches = layout(&dir);
    // baseOffset sits outside the CRC: only continuity shows the damage.
    let (seg, pos, _) = last_batch_of_first_segment(&batches);
    let path = log_file_path(&dir, seg);
    let mut bytes = fs::read(&path).unwrap();
    bytes[pos as usize..pos as usize + 8].copy_from_slice(&20i64.to_be_bytes());
    fs::write(&path, &bytes).unwrap();
    let before = all_files(&dir);

    let reason = corrupt_reason(Log::open(&dir, tp(), small_config()));
    assert!(reason.contains(&path.display().to_string()), "{reason}");
    assert_eq!(all_files(&dir), before);

    let report = verify_log_dir(&dir).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.problems[0].file, path);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.reason.contains("backwards")),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_log_cut_below_its_recovery_point_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = closed_log(tmp.path(), 10);
    let path = log_file_path(&dir, 0);
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let reason = corrupt_reason(Log::open(&dir, tp(), small_config()));
    assert!(reason.contains("below its recovery point"), "{reason}");
    assert!(path.exists());
    let report = verify_log_dir(&dir).unwrap();
    assert!(report
        .problems
        .iter()
        .any(|p| p.reason.contains("recovery point")));
}

#[test]
fn a_torn_tail_after_the_last_fsync_is_still_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, written) = closed_log(tmp.path(), 4);
    let mut log = Log::open(&dir, tp(), small_config()).unwrap();
    let mut b = build_batch(&BatchSpec::records(2));
    log.append_as_leader(&mut b, 3, NOW_MS).unwrap();
    drop(log); // a crash: the append was never synced
    let path = log_file_path(&dir, 0);
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let log = Log::open(&dir, tp(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), 2 * written.len() as i64);
}

#[test]
fn a_missing_first_segment_is_reported_by_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = closed_log(tmp.path(), 60);
    let log = Log::open(&dir, tp(), small_config()).unwrap();
    let bases = log.segment_base_offsets();
    drop(log);
    assert!(bases.len() >= 2);
    assert!(
        verify_log_dir(&dir).unwrap().is_ok(),
        "a clean log verifies"
    );
    fs::remove_file(log_file_path(&dir, 0)).unwrap();
    fs::remove_file(index_file_path(&dir, 0)).unwrap();
    let report = verify_log_dir(&dir).unwrap();
    assert!(
        report.problems.iter().any(|p| p.reason.contains("missing")),
        "{:?}",
        report.problems
    );
    // The broker still opens what is left (with a warning) rather than refusing it.
    let log = Log::open(&dir, tp(), small_config()).unwrap();
    assert_eq!(log.log_start_offset(), bases[1]);
}

#[test]
fn verify_checks_the_offset_index_against_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = closed_log(tmp.path(), 20);
    let index = index_file_path(&dir, 0);
    let mut bytes = fs::read(&index).unwrap();
    assert!(bytes.len() >= 8, "the test needs an index entry");
    bytes[7] ^= 0x01; // the first entry's position now points inside a batch
    fs::write(&index, &bytes).unwrap();
    let report = verify_log_dir(&dir).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.problems[0].file, index);
}

/// Verify holds the time index to the order its load does: an equal timestamp is out of order
/// (the open rebuilds such an index), not only a smaller one.
#[test]
fn verify_checks_the_time_index_order_as_the_load_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = closed_log(tmp.path(), 20);
    let index = crate::files::time_index_file_path(&dir, 0);
    let mut bytes = fs::read(&index).unwrap();
    assert!(bytes.len() >= 24, "the test needs two time index entries");
    let first_timestamp: [u8; 8] = bytes[..8].try_into().unwrap();
    bytes[12..20].copy_from_slice(&first_timestamp);
    fs::write(&index, &bytes).unwrap();
    let report = verify_log_dir(&dir).unwrap();
    assert!(
        report.problems.iter().any(|p| p.file == index),
        "{:?}",
        report.problems
    );
    assert!(matches!(
        crate::time_index::TimeIndex::load(&index, 0, 1 << 20).unwrap(),
        crate::index::IndexLoad::Rebuild(_)
    ));
}

#[test]
fn checked_fetch_stops_before_a_bad_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, written) = closed_log(tmp.path(), 6);
    let path = log_file_path(&dir, 0);
    let mut bytes = fs::read(&path).unwrap();
    let third: usize = written[..2].iter().map(Vec::len).sum();
    bytes[third + 80] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let log = Log::open(&dir, tp(), small_config()).unwrap();
    let slice = log.read(0, usize::MAX, i64::MAX, true).unwrap();
    let (valid, bad) = crate::verify::check_slice(&slice).unwrap();
    assert_eq!(valid, third, "the two batches before the bad one");
    let bad = bad.unwrap();
    assert_eq!((bad.position, bad.offset), (third as u64, Some(4)));
    assert!(matches!(
        bad.error,
        crate::error::BatchError::CrcMismatch { .. }
    ));
    let clean = log.read(0, third, i64::MAX, true).unwrap();
    assert_eq!(crate::verify::check_slice(&clean).unwrap(), (third, None));
    // The read counted every batch's records from the headers (the damage is in a record);
    // cut before the bad batch, the count is that of the two batches kept.
    assert_eq!(slice.data_records, 12);
    let mut cut = slice.clone();
    cut.size = valid;
    assert_eq!(crate::verify::data_records(&cut).unwrap(), 4);
    cut.size = valid + 10;
    assert_eq!(
        crate::verify::data_records(&cut).unwrap(),
        4,
        "a partial batch counts none"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Damage anywhere in a cleanly closed (wholly synced) log: reopening either refuses
        /// it as corrupt or keeps every offset; the segment files never change.
        #[test]
        fn damage_below_the_recovery_point_never_truncates(
            batches in 2usize..60,
            damage_at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
            span in 1usize..40,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let (dir, _) = closed_log(tmp.path(), batches);
            let files: Vec<std::path::PathBuf> = {
                let mut f: Vec<_> = fs::read_dir(&dir).unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "log"))
                    .collect();
                f.sort();
                f
            };
            let total: usize = files.iter().map(|f| fs::metadata(f).unwrap().len() as usize).sum();
            let mut at = damage_at.index(total);
            for f in &files {
                let mut bytes = fs::read(f).unwrap();
                if at < bytes.len() {
                    let end = (at + span).min(bytes.len());
                    for b in &mut bytes[at..end] {
                        *b ^= flip;
                    }
                    fs::write(f, &bytes).unwrap();
                    break;
                }
                at -= bytes.len();
            }
            let before = all_files(&dir);
            match Log::open(&dir, tp(), small_config()) {
                // A damaged baseOffset or lastOffsetDelta can move the end up (offsets are
                // skipped), never down: that would hand acknowledged offsets out again.
                Ok(log) => prop_assert!(log.log_end_offset() >= 2 * batches as i64),
                Err(LogError::Corrupt { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected error {}", e),
            }
            prop_assert_eq!(all_files(&dir), before);
        }
    }
}
