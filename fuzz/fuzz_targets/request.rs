//! One request frame (without its size prefix) through decoding and the handler of its API,
//! against an in-process broker on a temporary directory. The broker keeps its state across
//! inputs (topics, groups, logs), so sequences reach deep; it starts afresh every
//! `FRESH_EVERY` inputs to bound the directory's growth.
#![no_main]

use std::path::PathBuf;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use strom_broker::fuzzing::Harness;

const FRESH_EVERY: u64 = 20_000;

struct State {
    harness: Harness,
    dir: PathBuf,
    inputs: u64,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);
static GENERATION: Mutex<u64> = Mutex::new(0);

fn fresh() -> State {
    let mut generation = GENERATION.lock().unwrap_or_else(|e| e.into_inner());
    *generation += 1;
    let dir = std::env::temp_dir().join(format!(
        "strom-fuzz-request-{}-{}",
        std::process::id(),
        *generation
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let harness = Harness::new(&dir).expect("a broker on a fresh directory");
    State {
        harness,
        dir,
        inputs: 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if state.as_ref().is_some_and(|s| s.inputs >= FRESH_EVERY) {
        if let Some(old) = state.take() {
            let dir = old.dir.clone();
            drop(old);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let s = state.get_or_insert_with(fresh);
    s.inputs += 1;
    let _ = s.harness.handle(data);
});
