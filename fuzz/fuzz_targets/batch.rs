//! Bytes as a producer's records field: strom-log's batch validation, then an append to a
//! log on a temporary directory. An accepted append must be readable back exactly as
//! written (offsets patched in place), and a refused one must leave the log as it was.
#![no_main]

use std::path::PathBuf;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use strom_log::{Log, LogConfig, TopicPartition};

const FRESH_EVERY: u64 = 20_000;

struct State {
    log: Log,
    dir: PathBuf,
    appends: u64,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn fresh(generation: u64) -> State {
    let dir = std::env::temp_dir().join(format!(
        "strom-fuzz-batch-{}-{generation}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let tp = TopicPartition {
        topic: "fuzz".to_string(),
        partition: 0,
    };
    let config = LogConfig {
        // Small segments: rolls and index entries happen often.
        segment_bytes: 64 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    };
    let log = Log::open(&dir.join(tp.dir_name()), tp, config).expect("a log on a fresh directory");
    State {
        log,
        dir,
        appends: 0,
    }
}

static GENERATION: Mutex<u64> = Mutex::new(0);

fuzz_target!(|data: &[u8]| {
    let validated = strom_log::batch::validate_batches(data);
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if state.as_ref().is_some_and(|s| s.appends >= FRESH_EVERY) {
        if let Some(old) = state.take() {
            let dir = old.dir.clone();
            drop(old);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let s = state.get_or_insert_with(|| {
        let mut g = GENERATION.lock().unwrap_or_else(|e| e.into_inner());
        *g += 1;
        fresh(*g)
    });
    s.appends += 1;
    let before = s.log.log_end_offset();
    let mut buf = data.to_vec();
    match s.log.append_as_leader(&mut buf, 0, 1_700_000_000_000) {
        Ok(info) => {
            assert!(validated.is_ok(), "appended what validation refused");
            assert_eq!(info.first_offset, before);
            assert!(info.last_offset >= info.first_offset);
            let end = s.log.log_end_offset();
            assert_eq!(end, info.last_offset + 1);
            let slice = s
                .log
                .read(before, buf.len(), end, true)
                .expect("an accepted append reads back");
            let read = slice.read_bytes().expect("its bytes are in the segment");
            assert_eq!(
                &read[..],
                &buf[..],
                "read back differs from what was appended"
            );
        }
        Err(_) => assert_eq!(
            s.log.log_end_offset(),
            before,
            "a refused append moved the log end"
        ),
    }
});
