//! strom-loadgen: the load generator of Strom's benchmark suite.
//!
//! Every client here is librdkafka (through the `rdkafka` crate), the engine of kcat and of
//! most production clients, so the figures are the ones users will see. Each subcommand does
//! one measurement and prints one JSON object on stdout; `bench/run.py` drives them, samples
//! the broker around them and writes the report. Diagnostics go to stderr.
//!
//! Subcommands (all take `--brokers HOST:PORT`):
//!   produce        paced or unbounded production, throughput and broker CPU
//!   consume        read partitions from the beginning up to their high watermarks
//!   e2e            paced producer + consumer in one process: produce-to-consume latency
//!   create-topics  CreateTopics for N topics of K partitions
//!   metadata       time Metadata requests for every topic
//!   verify         after a crash: every acknowledged offset is there, with its content

mod admin;
mod args;
mod consume;
mod payload;
mod procstat;
mod produce;

use std::process::ExitCode;

use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

use args::Args;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprintln!("usage: strom-loadgen <produce|consume|e2e|create-topics|metadata|verify> --brokers HOST:PORT [--key value ...]");
        return ExitCode::from(2);
    };
    let args = match Args::parse(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("strom-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    // Start the shared clock before any client exists, so every timestamp is positive.
    payload::now_ns();
    let result = match cmd.as_str() {
        "produce" => produce::run(&args),
        "consume" => consume::run_consume(&args),
        "e2e" => consume::run_e2e(&args),
        "create-topics" => admin::create_topics(&args),
        "metadata" => admin::metadata(&args),
        "verify" => consume::run_verify(&args),
        other => Err(format!("unknown subcommand {other:?}")),
    };
    let result = result.and_then(|json| args.check_unused().map(|()| json));
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strom-loadgen {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Settings every client shares. Extra librdkafka properties can be passed as
/// `--rdkafka key=value,key=value` (for experiments without rebuilding).
pub fn base_config(args: &Args) -> Result<ClientConfig, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", args.str("brokers")?);
    c.set("client.id", "strom-bench");
    // The broker listens on 127.0.0.1 only; skip the IPv6 attempt for "localhost".
    c.set("broker.address.family", "v4");
    c.set_log_level(RDKafkaLogLevel::Warning);
    if let Some(extra) = args.opt_str("rdkafka") {
        for kv in extra.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--rdkafka {kv:?}: expected key=value"))?;
            c.set(k, v);
        }
    }
    Ok(c)
}

/// Prints librdkafka's warnings and errors to stderr, but only the first few of each run:
/// the crash-recovery scenario kills the broker under a producer on purpose, and the
/// resulting stream of "connection refused" lines says nothing new after the first.
#[derive(Default)]
pub struct QuietLog {
    printed: std::sync::atomic::AtomicU32,
}

const MAX_LOG_LINES: u32 = 8;

impl QuietLog {
    pub fn say(&self, line: std::fmt::Arguments<'_>) {
        let n = self
            .printed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < MAX_LOG_LINES {
            eprintln!("librdkafka: {line}");
        } else if n == MAX_LOG_LINES {
            eprintln!("librdkafka: (further messages suppressed)");
        }
    }
}

/// Warnings and worse (librdkafka's log level is set to Warning anyway).
pub fn loud(level: RDKafkaLogLevel) -> bool {
    use RDKafkaLogLevel::*;
    matches!(level, Emerg | Alert | Critical | Error | Warning)
}

/// A client context that only logs quietly (consumers and the admin client).
#[derive(Default)]
pub struct QuietContext {
    pub log: QuietLog,
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if crate::loud(level) {
            self.log.say(format_args!("{fac} {msg}"));
        }
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.say(format_args!("{error}: {reason}"));
    }
}

// Consumers here use assign() only, so no rebalance hooks are needed.
impl rdkafka::consumer::ConsumerContext for QuietContext {}

/// Runs a future to completion on this thread. The admin client resolves its futures from
/// its own polling thread, so no async runtime is needed: a thread-unparking waker will do.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// `a` with the fields of `b` added (both JSON objects).
pub fn merged(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Milliseconds with three decimals, for JSON.
pub fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// Rounds to 3 decimals so the JSON stays readable.
pub fn r3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}
