//! Log-level tests: offsets, reads, rolls, indexes, recovery, retention, and property tests.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::batch::{validate_batches, BatchHeader, TimestampType};
use crate::checkpoint::{LOG_START_OFFSET_CHECKPOINT_FILE, RECOVERY_POINT_CHECKPOINT_FILE};
use crate::config::LogConfig;
use crate::error::LogError;
use crate::files::{index_file_path, log_file_path, time_index_file_path};
use crate::log::Log;
use crate::testutil::{build_batch, BatchSpec};
use crate::topic_partition::TopicPartition;

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

fn open(dir: &Path, config: &LogConfig) -> Log {
    Log::open(dir, tp(), config.clone()).expect("open log")
}

/// Appends one batch built from `spec`; returns the bytes as stored (offsets patched).
fn append(log: &mut Log, spec: &BatchSpec) -> Vec<u8> {
    let mut bytes = build_batch(spec);
    log.append_as_leader(&mut bytes, 7, NOW_MS).expect("append");
    bytes
}

fn append_n(log: &mut Log, batches: usize, records: i32) -> Vec<Vec<u8>> {
    (0..batches)
        .map(|i| {
            append(
                log,
                &BatchSpec {
                    records,
                    base_timestamp: NOW_MS + i as i64 * 10,
                    value_size_bytes: 40,
                    ..Default::default()
                },
            )
        })
        .collect()
}

/// Every batch from the log start to the end, split into per-batch byte vectors.
fn read_all(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let slice = log.read(offset, usize::MAX, i64::MAX, true).unwrap();
        assert!(!slice.is_empty(), "nothing at offset {offset}");
        let bytes = slice.read_bytes().unwrap();
        let headers = validate_batches(&bytes).expect("reads return valid whole batches");
        assert_eq!(headers[0].base_offset, slice.first_offset);
        let mut pos = 0;
        for h in &headers {
            out.push(bytes[pos..pos + h.size_bytes()].to_vec());
            pos += h.size_bytes();
        }
        offset = headers.last().unwrap().next_offset();
    }
    out
}

fn header(bytes: &[u8]) -> BatchHeader {
    validate_batches(bytes).unwrap()[0]
}

fn seg_path(dir: &Path, base: i64) -> PathBuf {
    log_file_path(dir, base)
}

#[test]
fn assigns_offsets_patches_epoch_and_keeps_crc_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), &LogConfig::default());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let mut first = build_batch(&BatchSpec {
        records: 3,
        base_offset: 999, // producers' base offsets are ignored
        ..Default::default()
    });
    let info = log.append_as_leader(&mut first, 5, NOW_MS).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 2));
    assert_eq!(info.record_count, 3);
    assert_eq!(info.log_append_time_ms, -1);
    assert_eq!(info.valid_bytes, first.len());

    // Several batches in one append get contiguous offsets.
    let mut multi = build_batch(&BatchSpec::records(1));
    multi.extend(build_batch(&BatchSpec {
        records: 4,
        base_timestamp: 5_000,
        ..Default::default()
    }));
    let info = log.append_as_leader(&mut multi, 6, NOW_MS).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (3, 7));
    assert_eq!(info.batch_count, 2);
    assert_eq!(info.max_timestamp, 5_003);
    assert_eq!(info.offset_of_max_timestamp, 4);
    assert_eq!(log.log_end_offset(), 8);

    let batches = read_all(&log);
    let headers: Vec<BatchHeader> = batches.iter().map(|b| header(b)).collect();
    let offsets: Vec<(i64, i64)> = headers
        .iter()
        .map(|h| (h.base_offset, h.last_offset()))
        .collect();
    assert_eq!(offsets, vec![(0, 2), (3, 3), (4, 7)]);
    let epochs: Vec<i32> = headers.iter().map(|h| h.partition_leader_epoch).collect();
    assert_eq!(epochs, vec![5, 6, 6]);
    assert_eq!(batches[0], first, "stored bytes are the patched input");
}

#[test]
fn invalid_append_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), &LogConfig::default());
    append_n(&mut log, 2, 2);
    let size_before = log.size_bytes();
    let mut buf = build_batch(&BatchSpec::records(2));
    let mut bad = build_batch(&BatchSpec::records(2));
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    buf.extend(bad);
    let err = log.append_as_leader(&mut buf, 1, NOW_MS).unwrap_err();
    assert!(
        matches!(err, LogError::Batch(crate::BatchError::CrcMismatch { .. })),
        "{err:?}"
    );
    assert_eq!(err.kafka_error_code(), 2);
    let mut partial = build_batch(&BatchSpec::records(2));
    partial.truncate(partial.len() - 3);
    assert_eq!(
        log.append_as_leader(&mut partial, 1, NOW_MS)
            .unwrap_err()
            .kafka_error_code(),
        2
    );
    assert_eq!(
        log.append_as_leader(&mut [], 1, NOW_MS)
            .unwrap_err()
            .kafka_error_code(),
        87
    );
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.size_bytes(), size_before);
    assert_eq!(
        fs::metadata(seg_path(tmp.path(), 0)).unwrap().len(),
        size_before
    );
}

#[test]
fn rejects_oversized_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 200,
        segment_bytes: 1000,
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), &config);
    let mut big = build_batch(&BatchSpec {
        records: 1,
        value_size_bytes: 200,
        ..Default::default()
    });
    let err = log.append_as_leader(&mut big, 0, NOW_MS).unwrap_err();
    assert!(matches!(
        err,
        LogError::MessageTooLarge { max_bytes: 200, .. }
    ));
    assert_eq!(err.kafka_error_code(), 10);
    // Each batch fits, but together they exceed a segment.
    let mut many = Vec::new();
    for _ in 0..10 {
        many.extend(build_batch(&BatchSpec {
            records: 1,
            value_size_bytes: 100,
            ..Default::default()
        }));
    }
    let err = log.append_as_leader(&mut many, 0, NOW_MS).unwrap_err();
    assert_eq!(err.kafka_error_code(), 18);
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn log_append_time_rewrites_timestamp_and_crc() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), &config);
    let mut bytes = build_batch(&BatchSpec {
        records: 3,
        base_timestamp: 5,
        ..Default::default()
    });
    let info = log.append_as_leader(&mut bytes, 1, NOW_MS).unwrap();
    assert_eq!(info.log_append_time_ms, NOW_MS);
    assert_eq!(info.max_timestamp, NOW_MS);
    let stored = read_all(&log);
    let h = header(&stored[0]); // re-validates the recomputed CRC
    assert_eq!(h.max_timestamp, NOW_MS);
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    // And it survives recovery, which checks CRCs again.
    drop(log);
    let log = open(tmp.path(), &config);
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn reads_from_middle_of_batch_and_respects_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), &LogConfig::default());
    let batches = append_n(&mut log, 5, 4); // offsets 0..20, 4 per batch
    let size = batches[0].len();
    assert!(batches.iter().all(|b| b.len() == size));

    // Offset 6 sits inside the second batch: that batch is returned whole.
    let s = log.read(6, 10 * size, i64::MAX, false).unwrap();
    assert_eq!(s.first_offset, 4);
    assert_eq!(s.position, size as u64);
    assert_eq!(s.size, 4 * size);
    assert_eq!(
        s.read_bytes().unwrap().as_ref(),
        batches[1..].concat().as_slice()
    );

    // max_bytes cuts at whole batches.
    assert_eq!(
        log.read(0, 2 * size + size / 2, i64::MAX, false)
            .unwrap()
            .size,
        2 * size
    );
    // KIP-74: a first batch larger than max_bytes is returned whole only with min_one_batch.
    assert_eq!(log.read(0, size - 1, i64::MAX, true).unwrap().size, size);
    assert!(log.read(0, size - 1, i64::MAX, false).unwrap().is_empty());
    assert_eq!(log.read(0, 0, i64::MAX, true).unwrap().size, size);

    // The high watermark excludes batches at or above it.
    assert_eq!(log.read(0, usize::MAX, 8, false).unwrap().size, 2 * size);
    assert!(log.read(8, usize::MAX, 8, false).unwrap().is_empty());
    assert!(log.read(4, usize::MAX, 4, false).unwrap().is_empty());
}

#[test]
fn offset_out_of_range_and_empty_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), &small_config());
    append_n(&mut log, 3, 2);
    assert_eq!(log.log_end_offset(), 6);
    let s = log.read(6, 1000, i64::MAX, true).unwrap();
    assert!(s.is_empty());
    assert_eq!(s.read_bytes().unwrap().len(), 0);
    for bad in [7, 100, -1] {
        let err = log.read(bad, 1000, i64::MAX, true).unwrap_err();
        assert!(
            matches!(err, LogError::OffsetOutOfRange { .. }),
            "{bad}: {err:?}"
        );
        assert_eq!(err.kafka_error_code(), 1);
    }
}

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config();
    let mut log = open(tmp.path(), &config);
    let rolls_before = crate::log::SEGMENT_ROLLS.load(std::sync::atomic::Ordering::Relaxed);
    let written = append_n(&mut log, 60, 3);
    // Other tests roll too, concurrently: at least this log's rolls are counted.
    let rolls = crate::log::SEGMENT_ROLLS.load(std::sync::atomic::Ordering::Relaxed) - rolls_before;
    assert!(
        rolls >= log.segment_count() as u64 - 1,
        "rolls counted: {rolls}"
    );
    assert_eq!(log.dirty_bytes(), None, "not a compacted log");
    assert!(
        log.segment_count() >= 3,
        "segments: {}",
        log.segment_count()
    );
    for s in log.segments() {
        assert!(s.size_bytes() <= config.segment_bytes);
    }
    // Segment bases are the offsets of their first batch.
    let bases = log.segment_base_offsets();
    for pair in bases.windows(2) {
        assert!(pair[0] < pair[1]);
    }
    for (base, s) in bases.iter().zip(log.segments()) {
        assert_eq!(*base, s.base_offset());
        assert!(fs::metadata(seg_path(tmp.path(), *base)).is_ok());
    }
    assert_eq!(read_all(&log), written);
    // A read returns data from one segment only.
    let s = log.read(0, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(s.size as u64, log.segments().next().unwrap().size_bytes());
}

#[test]
fn rolls_by_age_from_first_batch_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), &config);
    let spec = |ts: i64| BatchSpec {
        records: 1,
        base_timestamp: ts,
        ..Default::default()
    };
    append(&mut log, &spec(10_000));
    append(&mut log, &spec(10_900));
    assert_eq!(log.segment_count(), 1);
    append(&mut log, &spec(11_001)); // 1001 ms after the first batch
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

#[test]
fn rolls_by_age_from_creation_without_timestamps() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), &config);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let spec = BatchSpec {
        records: 1,
        base_timestamp: -1,
        max_timestamp: Some(-1),
        ..Default::default()
    };
    for now_ms in [now, now + 500] {
        let mut b = build_batch(&spec);
        log.append_as_leader(&mut b, 0, now_ms).unwrap();
    }
    assert_eq!(log.segment_count(), 1);
    let mut b = build_batch(&spec);
    log.append_as_leader(&mut b, 0, now + 5_000).unwrap();
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn rolls_when_index_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 0, // an entry for every batch after the first
        segment_index_bytes: 24, // 3 offset entries, 2 time entries
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 12, 1);
    assert!(
        log.segment_count() >= 3,
        "segments {:?}",
        log.segment_base_offsets()
    );
    for s in log.segments() {
        assert!(s.offset_index().len() <= 3);
        assert!(s.time_index().len() <= 3); // + the final entry written at roll
    }
    assert_eq!(read_all(&log), written);
}

#[test]
fn sparse_offset_index_locates_every_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 300,
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 40, 3);
    let seg = log.active_segment();
    assert!(
        seg.offset_index().len() > 5,
        "index entries {}",
        seg.offset_index().len()
    );
    assert!(seg.offset_index().len() < 40);
    // Entries point at the batch whose base offset they name.
    let mut pos = 0u64;
    let mut starts = std::collections::HashMap::new();
    for b in &written {
        starts.insert(header(b).base_offset, pos);
        pos += b.len() as u64;
    }
    for entry in seg.offset_index().entries() {
        assert_eq!(starts.get(&entry.offset), Some(&u64::from(entry.position)));
    }
    for offset in 0..log.log_end_offset() {
        let s = log.read(offset, 1, i64::MAX, true).unwrap();
        let h = header(&s.read_bytes().unwrap());
        assert!(h.base_offset <= offset && offset <= h.last_offset());
        assert_eq!(s.position, starts[&h.base_offset]);
    }
}

#[test]
fn finds_offsets_by_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 100,
        segment_bytes: 2048,
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), &config);
    // Non-monotonic max timestamps, as producers can send.
    let timestamps = [100, 300, 200, 500, 400, 400, 900, 600, 1000, 950];
    let mut expected = Vec::new();
    for (i, ts) in timestamps.iter().cycle().take(60).enumerate() {
        let ts = ts + (i as i64 / 10) * 1000;
        let bytes = append(
            &mut log,
            &BatchSpec {
                records: 2,
                base_timestamp: ts - 1,
                value_size_bytes: 20,
                ..Default::default()
            },
        );
        expected.push(header(&bytes));
    }
    assert!(log.segment_count() > 1);
    for target in (0..6500).step_by(37) {
        let want = expected.iter().find(|h| h.max_timestamp >= target);
        let got = log.fetch_offset_by_timestamp(target).unwrap();
        match want {
            Some(h) => {
                let got = got.unwrap_or_else(|| panic!("target {target}"));
                assert_eq!(
                    (got.offset, got.timestamp),
                    (h.base_offset, h.max_timestamp),
                    "target {target}"
                );
                assert_eq!(got.leader_epoch, Some(7));
            }
            None => assert_eq!(got, None, "target {target}"),
        }
    }
    let max = log.max_timestamp_and_offset().unwrap();
    let best = expected
        .iter()
        .max_by_key(|h| (h.max_timestamp, -h.base_offset))
        .unwrap();
    assert_eq!(
        (max.timestamp, max.offset),
        (best.max_timestamp, best.base_offset)
    );
    // Same answers after a clean reopen (from the indexes, no scan).
    log.close().unwrap();
    let log = open(tmp.path(), &config);
    assert_eq!(
        log.max_timestamp_and_offset().unwrap().timestamp,
        best.max_timestamp
    );
    let got = log.fetch_offset_by_timestamp(3_450).unwrap().unwrap();
    let want = expected.iter().find(|h| h.max_timestamp >= 3_450).unwrap();
    assert_eq!(got.offset, want.base_offset);
}

#[test]
fn reopens_after_clean_close() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config();
    let mut log = open(tmp.path(), &config);
    let mut written = append_n(&mut log, 30, 2);
    let leo = log.log_end_offset();
    log.close().unwrap();
    assert!(matches!(
        log.append_as_leader(&mut build_batch(&BatchSpec::records(1)), 0, NOW_MS),
        Err(LogError::Closed(_))
    ));
    let checkpoint = fs::read_to_string(tmp.path().join(RECOVERY_POINT_CHECKPOINT_FILE)).unwrap();
    assert_eq!(checkpoint, format!("0\n1\ntopic 0 {leo}\n"));
    let mut log = open(tmp.path(), &config);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.recovery_point(), leo);
    assert_eq!(read_all(&log), written);
    written.extend(append_n(&mut log, 3, 2));
    assert_eq!(header(written.last().unwrap()).base_offset, leo + 4);
    assert_eq!(read_all(&log), written);
}

/// Simulates a crash: the log is dropped without close; nothing was marked flushed.
fn crash(log: Log) {
    drop(log);
}

#[test]
fn recovers_torn_tail_truncated_mid_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig::default();
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 5, 3);
    crash(log);
    let path = seg_path(tmp.path(), 0);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let mut log = open(tmp.path(), &config);
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(read_all(&log), written[..4].to_vec());
    let next = append(&mut log, &BatchSpec::records(1));
    assert_eq!(header(&next).base_offset, 12);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        written[..4].concat().len() as u64 + next.len() as u64
    );
}

#[test]
fn recovers_garbage_after_last_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig::default();
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 4, 2);
    crash(log);
    let path = seg_path(tmp.path(), 0);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0xAB; 100]).unwrap();
    drop(f);
    let mut log = open(tmp.path(), &config);
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(read_all(&log), written);
    assert_eq!(
        header(&append(&mut log, &BatchSpec::records(2))).base_offset,
        8
    );
}

#[test]
fn recovers_flipped_byte_and_drops_later_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config();
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 60, 2);
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3);
    crash(log);
    // Flip a byte inside the third batch of the second segment.
    let seg_base = bases[1];
    let seg_batches: Vec<&Vec<u8>> = written
        .iter()
        .filter(|b| {
            let h = header(b);
            h.base_offset >= seg_base && h.base_offset < bases[2]
        })
        .collect();
    let offset_in_file = seg_batches[0].len() + seg_batches[1].len() + 70;
    let path = seg_path(tmp.path(), seg_base);
    let mut bytes = fs::read(&path).unwrap();
    bytes[offset_in_file] ^= 0x01;
    fs::write(&path, &bytes).unwrap();

    let mut log = open(tmp.path(), &config);
    let survivor_end = header(seg_batches[1]).next_offset();
    assert_eq!(log.log_end_offset(), survivor_end);
    assert_eq!(log.segment_base_offsets(), vec![bases[0], bases[1]]);
    for base in &bases[2..] {
        assert!(!seg_path(tmp.path(), *base).exists());
        assert!(!index_file_path(tmp.path(), *base).exists());
    }
    let n = written
        .iter()
        .position(|b| header(b).base_offset == survivor_end)
        .unwrap();
    assert_eq!(read_all(&log), written[..n].to_vec());
    assert_eq!(
        header(&append(&mut log, &BatchSpec::records(1))).base_offset,
        survivor_end
    );
}

#[test]
fn recovery_scans_only_after_recovery_point() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config();
    let mut log = open(tmp.path(), &config);
    append_n(&mut log, 40, 2);
    let target = log.flush_target();
    target.sync().unwrap();
    log.mark_flushed_target(&target).unwrap();
    assert_eq!(log.recovery_point(), 80);
    let flushed_bases = log.segment_base_offsets();
    append_n(&mut log, 10, 2);
    let log_bases_after = log.segment_base_offsets();
    crash(log);
    // Damage the payload of the first (flushed) segment: recovery must not look at it.
    let first = seg_path(tmp.path(), 0);
    let mut bytes = fs::read(&first).unwrap();
    bytes[100] ^= 0xff;
    let n = bytes.len();
    bytes[n - 1] ^= 0xff; // inside its last batch, after its last index entry
    fs::write(&first, &bytes).unwrap();
    // And tear the unflushed tail.
    let last_base = *flushed_bases.last().unwrap();
    let active = seg_path(tmp.path(), *log_bases_after.last().unwrap());
    let len = fs::metadata(&active).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let log = open(tmp.path(), &config);
    assert_eq!(
        log.log_end_offset(),
        98,
        "trusted prefix kept, torn batch cut"
    );
    assert_eq!(log.recovery_point(), 80);
    assert_eq!(log.segment_base_offsets()[0], 0);
    assert!(log.segment_base_offsets().contains(&last_base));
}

/// Index entries are kept in memory and written with the recovery-point checkpoint, at a roll
/// and at close, not at every append; a crash leaves an index that lags behind the log, which
/// recovery treats as a sparser index.
#[test]
fn indexes_are_written_lazily_and_a_lagging_one_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let idx = index_file_path(tmp.path(), 0);
    let tidx = time_index_file_path(tmp.path(), 0);
    let mut log = open(tmp.path(), &config);
    append_n(&mut log, 10, 2);
    assert_eq!(
        fs::metadata(&idx).unwrap().len(),
        0,
        "nothing written per append"
    );
    assert_eq!(fs::metadata(&tidx).unwrap().len(), 0);
    let target = log.flush_target();
    target.sync().unwrap();
    log.mark_flushed_target(&target).unwrap();
    let at_checkpoint = fs::metadata(&idx).unwrap().len();
    assert!(
        at_checkpoint >= 8 * 8,
        "written with the checkpoint: {at_checkpoint}"
    );
    assert!(fs::metadata(&tidx).unwrap().len() > 0);
    let written = {
        let mut w = read_all(&log);
        w.extend(append_n(&mut log, 30, 2));
        w
    };
    assert_eq!(fs::metadata(&idx).unwrap().len(), at_checkpoint);
    crash(log);

    let log = open(tmp.path(), &config);
    assert_eq!(read_all(&log), written);
    assert_eq!(log.log_end_offset(), 80);
    for offset in (0..80).step_by(3) {
        let h = header(
            &log.read(offset, 1, i64::MAX, true)
                .unwrap()
                .read_bytes()
                .unwrap(),
        );
        assert!(h.base_offset <= offset && offset <= h.last_offset());
    }
    assert!(
        fs::metadata(&idx).unwrap().len() > at_checkpoint,
        "what recovery re-indexed is written at open"
    );
}

#[test]
fn recovery_point_checkpoint_is_rate_limited_and_forced_on_close() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), &LogConfig::default());
    let cp = tmp.path().join(RECOVERY_POINT_CHECKPOINT_FILE);
    append_n(&mut log, 2, 1);
    let t = log.flush_target();
    assert_eq!(t.offset(), 2);
    t.sync().unwrap();
    log.mark_flushed(t.offset()).unwrap();
    assert_eq!(fs::read_to_string(&cp).unwrap(), "0\n1\ntopic 0 2\n");
    append_n(&mut log, 2, 1);
    let t = log.flush_target();
    t.sync().unwrap();
    log.mark_flushed(t.offset()).unwrap();
    assert_eq!(log.recovery_point(), 4);
    assert_eq!(
        fs::read_to_string(&cp).unwrap(),
        "0\n1\ntopic 0 2\n",
        "within 1 s: not rewritten"
    );
    log.checkpoint_recovery_point().unwrap();
    assert_eq!(fs::read_to_string(&cp).unwrap(), "0\n1\ntopic 0 4\n");
    // Offsets past the end are clamped; a stale target after truncation is ignored.
    log.mark_flushed(1_000).unwrap();
    assert_eq!(log.recovery_point(), 4);
    append_n(&mut log, 2, 1);
    let stale = log.flush_target();
    log.truncate_to(5).unwrap();
    append_n(&mut log, 3, 1);
    stale.sync().unwrap();
    log.mark_flushed_target(&stale).unwrap();
    assert_eq!(log.recovery_point(), 4);
    log.close().unwrap();
    assert_eq!(fs::read_to_string(&cp).unwrap(), "0\n1\ntopic 0 8\n");
}

#[test]
fn rebuilds_missing_and_corrupt_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 200,
        ..small_config()
    };
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 50, 2);
    let bases = log.segment_base_offsets();
    log.close().unwrap();
    let idx0 = index_file_path(tmp.path(), bases[0]);
    let tidx0 = time_index_file_path(tmp.path(), bases[0]);
    let idx1 = index_file_path(tmp.path(), bases[1]);
    let original_idx0 = fs::read(&idx0).unwrap();
    let original_tidx0 = fs::read(&tidx0).unwrap();
    let original_idx1 = fs::read(&idx1).unwrap();
    assert!(!original_idx0.is_empty() && !original_idx1.is_empty());
    fs::remove_file(&idx0).unwrap();
    fs::write(&idx1, [0xffu8; 12]).unwrap(); // mis-sized
    let last = index_file_path(tmp.path(), *bases.last().unwrap());
    let mut garbage = fs::read(&last).unwrap();
    garbage.extend([0, 0, 0, 1, 0, 0, 0, 1]); // out of order entry
    fs::write(&last, &garbage).unwrap();

    let log = open(tmp.path(), &config);
    assert_eq!(fs::read(&idx0).unwrap(), original_idx0);
    assert_eq!(fs::read(&tidx0).unwrap(), original_tidx0);
    assert_eq!(fs::read(&idx1).unwrap(), original_idx1);
    assert_eq!(fs::metadata(&last).unwrap().len() % 8, 0);
    assert_eq!(read_all(&log), written);
    for offset in (0..log.log_end_offset()).step_by(7) {
        let h = header(
            &log.read(offset, 1, i64::MAX, true)
                .unwrap()
                .read_bytes()
                .unwrap(),
        );
        assert!(h.base_offset <= offset && offset <= h.last_offset());
    }
}

#[test]
fn index_pointing_at_wrong_batch_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 20, 2);
    log.close().unwrap();
    let idx = index_file_path(tmp.path(), 0);
    let mut bytes = fs::read(&idx).unwrap();
    let n = bytes.len();
    // Shift the last entry's position by one byte: still ordered and in range, but wrong.
    let pos = u32::from_be_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]) + 1;
    bytes[n - 4..].copy_from_slice(&pos.to_be_bytes());
    fs::write(&idx, &bytes).unwrap();
    let log = open(tmp.path(), &config);
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(read_all(&log), written);
}

#[test]
fn deletes_stray_files_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig::default();
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 3, 1);
    log.close().unwrap();
    let strays = [
        "00000000000000000000.log.deleted",
        "00000000000000000100.log.swap",
        "00000000000000000200.log.cleaned",
        "00000000000000000300.index",
        "00000000000000000300.timeindex",
        "recovery-point-offset-checkpoint.tmp",
    ];
    for s in strays {
        fs::write(tmp.path().join(s), b"junk").unwrap();
    }
    let log = open(tmp.path(), &config);
    for s in strays {
        assert!(!tmp.path().join(s).exists(), "{s} should be deleted");
    }
    assert_eq!(read_all(&log), written);
}

#[test]
fn truncate_to_removes_tail_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config();
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 60, 2);
    let bases = log.segment_base_offsets();
    let cut = bases[1] + 5; // inside a batch of segment 1: that batch goes whole
    log.truncate_to(cut).unwrap();
    assert_eq!(log.log_end_offset(), cut - 1);
    assert_eq!(log.segment_base_offsets(), vec![bases[0], bases[1]]);
    assert!(!seg_path(tmp.path(), bases[2]).exists());
    let n = ((cut - 1) / 2) as usize;
    assert_eq!(read_all(&log), written[..n].to_vec());
    assert_eq!(
        header(&append(&mut log, &BatchSpec::records(1))).base_offset,
        cut - 1
    );
    // Survives a crash + recovery.
    crash(log);
    let mut log = open(tmp.path(), &config);
    assert_eq!(log.log_end_offset(), cut);
    // Truncating below the first segment starts over at that offset.
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        header(&append(&mut log, &BatchSpec::records(1))).base_offset,
        0
    );
}

#[test]
fn delete_records_before_advances_log_start() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config();
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 60, 2);
    let bases = log.segment_base_offsets();
    let target = bases[2] + 3;
    assert_eq!(log.delete_records_before(target).unwrap(), target);
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(log.segment_base_offsets()[0], bases[2]);
    assert!(!seg_path(tmp.path(), bases[0]).exists());
    assert!(matches!(
        log.read(target - 1, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Reading at the start offset returns the batch containing it.
    let s = log.read(target, 1, i64::MAX, true).unwrap();
    assert!(s.first_offset <= target);
    assert!(log.delete_records_before(log.log_end_offset() + 1).is_err());
    assert_eq!(
        log.delete_records_before(1).unwrap(),
        target,
        "never moves back"
    );
    let cp = fs::read_to_string(tmp.path().join(LOG_START_OFFSET_CHECKPOINT_FILE)).unwrap();
    assert_eq!(cp, format!("0\n1\ntopic 0 {target}\n"));
    crash(log);
    let log = open(tmp.path(), &config);
    assert_eq!(log.log_start_offset(), target);
    let all = read_all(&log);
    assert_eq!(all.last(), written.last());
    // Truncating below the log start offset starts the log over at that offset.
    let mut log = log;
    let restart = bases[2] - 1;
    log.truncate_to(restart).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![restart]);
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (restart, restart)
    );
    assert!(!seg_path(tmp.path(), bases[2]).exists());
    assert_eq!(
        header(&append(&mut log, &BatchSpec::records(1))).base_offset,
        restart
    );
    crash(log);
    let log = open(tmp.path(), &config);
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (restart, restart + 1)
    );
}

#[test]
fn retention_by_time_and_size_never_deletes_active_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 10_000,
        ..small_config()
    };
    let mut log = open(tmp.path(), &config);
    // Old batches first, then recent ones.
    for i in 0..60 {
        let ts = if i < 40 { NOW_MS - 100_000 } else { NOW_MS };
        append(
            &mut log,
            &BatchSpec {
                records: 2,
                base_timestamp: ts,
                value_size_bytes: 40,
                ..Default::default()
            },
        );
    }
    let before = log.segment_count();
    let deleted = log.enforce_retention(NOW_MS).unwrap();
    assert!(deleted > 0);
    assert_eq!(log.segment_count(), before - deleted);
    for s in log.segments().take(log.segment_count() - 1) {
        assert!(NOW_MS - s.max_timestamp_so_far() <= 10_000);
    }
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    // Everything expired: only the active segment survives.
    assert!(log.enforce_retention(NOW_MS + 1_000_000).unwrap() > 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.enforce_retention(NOW_MS + 1_000_000).unwrap(), 0);

    // Size-based.
    let tmp2 = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 5_000,
        ..small_config()
    };
    let mut log = open(tmp2.path(), &config);
    append_n(&mut log, 100, 2);
    log.enforce_retention(NOW_MS).unwrap();
    assert!(
        log.size_bytes() <= 5_000 + config.segment_bytes,
        "size {}",
        log.size_bytes()
    );
    assert!(log.size_bytes() > 5_000 - config.segment_bytes);
    assert!(log.segment_count() >= 2);
}

#[test]
fn fetched_slice_survives_segment_deletion() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 0,
        ..small_config()
    };
    let mut log = open(tmp.path(), &config);
    let written = append_n(&mut log, 60, 2);
    let slice = log.read(0, 300, i64::MAX, true).unwrap();
    assert!(log.enforce_retention(NOW_MS + 1_000_000).unwrap() > 0);
    assert!(!seg_path(tmp.path(), 0).exists());
    assert_eq!(slice.read_bytes().unwrap().as_ref(), &written[0][..]);
}

#[test]
fn delete_removes_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-0");
    let mut log = open(&dir, &LogConfig::default());
    append_n(&mut log, 2, 1);
    log.delete().unwrap();
    assert!(!dir.exists());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Every appended offset is readable, offsets are contiguous and reads return whole
    /// batches in order, whatever the batch sizes, max_bytes and segment rolls.
    #[test]
    fn every_offset_is_readable(
        batches in prop::collection::vec((1i32..12, 0usize..120), 1..60),
        max_bytes in 1usize..3000,
        index_interval_bytes in 0u64..600,
        reopen in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 2048, index_interval_bytes, ..LogConfig::default() };
        let mut log = open(tmp.path(), &config);
        let mut written = Vec::new();
        let mut expected_next = 0;
        for (records, value) in &batches {
            let mut b = build_batch(&BatchSpec { records: *records, value_size_bytes: *value, ..Default::default() });
            let info = log.append_as_leader(&mut b, 1, NOW_MS).unwrap();
            prop_assert_eq!(info.first_offset, expected_next);
            expected_next = info.last_offset + 1;
            written.push(b);
        }
        prop_assert_eq!(log.log_end_offset(), expected_next);
        if reopen {
            crash(log);
            log = open(tmp.path(), &config);
            prop_assert_eq!(log.log_end_offset(), expected_next);
        }
        for offset in 0..expected_next {
            let s = log.read(offset, max_bytes, i64::MAX, true).unwrap();
            let bytes = s.read_bytes().unwrap();
            let headers = validate_batches(&bytes).unwrap();
            prop_assert!(headers[0].base_offset <= offset && offset <= headers[0].last_offset());
            prop_assert!(headers.len() == 1 || bytes.len() <= max_bytes);
            for pair in headers.windows(2) {
                prop_assert_eq!(pair[0].next_offset(), pair[1].base_offset);
            }
        }
        prop_assert_eq!(read_all(&log), written);
    }

    /// Cutting a segment file anywhere (and optionally appending junk) reopens to a prefix of
    /// what was written, and appends continue right after it.
    #[test]
    fn recovery_yields_a_prefix(
        batches in prop::collection::vec((1i32..6, 0usize..200), 1..40),
        segment_pick in any::<prop::sample::Index>(),
        cut_fraction in 0.0f64..1.0,
        junk in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 1500, index_interval_bytes: 128, ..LogConfig::default() };
        let mut log = open(tmp.path(), &config);
        let mut written = Vec::new();
        for (records, value) in &batches {
            written.push(append(&mut log, &BatchSpec { records: *records, value_size_bytes: *value, ..Default::default() }));
        }
        let bases = log.segment_base_offsets();
        crash(log);
        let base = bases[segment_pick.index(bases.len())];
        let path = seg_path(tmp.path(), base);
        let len = fs::metadata(&path).unwrap().len();
        let cut = (len as f64 * cut_fraction) as u64;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(cut).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&junk, cut).unwrap();
        drop(f);

        let mut log = open(tmp.path(), &config);
        let recovered = read_all(&log);
        prop_assert!(recovered.len() <= written.len());
        prop_assert_eq!(&recovered[..], &written[..recovered.len()]);
        let leo = recovered.last().map_or(base.min(0), |b| header(b).next_offset());
        prop_assert_eq!(log.log_end_offset(), leo);
        // Everything before the damaged segment survives.
        let before_damage = written.iter().filter(|b| header(b).next_offset() <= base).count();
        prop_assert!(recovered.len() >= before_damage);
        let next = append(&mut log, &BatchSpec::records(2));
        prop_assert_eq!(header(&next).base_offset, leo);
        crash(log);
        let log = open(tmp.path(), &config);
        prop_assert_eq!(log.log_end_offset(), leo + 2);
    }
}

#[test]
fn log_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
    assert_send_sync::<crate::log::FetchSlice>();
    assert_send_sync::<crate::log::FlushTarget>();
}
