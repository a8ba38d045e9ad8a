//! `produce`: one or more librdkafka producers, unbounded or paced, for a duration, a message
//! count or a byte count; reports what the broker acknowledged, the broker's and the
//! client's CPU over the same window, and librdkafka's own view of the requests it sent.
//!
//! --topic T --size BYTES --acks all|1|0 --linger-ms MS
//! [--partitions N]        send round-robin to partitions 0..N (default: librdkafka's partitioner)
//! [--duration-s S | --messages N | --bytes B]
//! [--rate-msgs R]         total messages per second (default: as fast as acknowledged)
//! [--producers K]         K producer instances, each with its own thread and connection
//! [--batch-messages N] [--batch-bytes B] [--timeout-ms MS] [--broker-pid PID]
//! [--acked-file F]        write the last acknowledged offset of each partition (crash test)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde_json::{json, Value};

use crate::args::Args;
use crate::payload;
use crate::procstat::CpuWindow;
use crate::{base_config, merged, r3, QuietLog};

/// What the delivery callbacks of all producers add up.
#[derive(Default)]
pub struct Shared {
    acked: AtomicU64,
    acked_bytes: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// partition -> (offset, seq, sender) of the highest acknowledged offset, if tracking.
    track: bool,
    last_acked: Mutex<BTreeMap<i32, (i64, u64, u32)>>,
    stats: Mutex<Option<Value>>,
    log: QuietLog,
}

impl Shared {
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Acquire)
    }
    pub fn stats(&self) -> Option<Value> {
        self.stats.lock().unwrap().clone()
    }
}

pub struct Ctx(pub Arc<Shared>);

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if crate::loud(level) {
            self.0.log.say(format_args!("{fac} {msg}"));
        }
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.log.say(format_args!("{error}: {reason}"));
    }
    fn stats_raw(&self, statistics: &[u8]) {
        if let Ok(v) = serde_json::from_slice::<Value>(statistics) {
            *self.0.stats.lock().unwrap() = Some(v);
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.0.acked.fetch_add(1, Ordering::AcqRel);
                self.0
                    .acked_bytes
                    .fetch_add(m.payload_len() as u64, Ordering::AcqRel);
                if self.0.track {
                    if let Some(h) = m.payload().and_then(payload::header) {
                        let mut last = self.0.last_acked.lock().unwrap();
                        let e = last.entry(m.partition()).or_insert((-1, 0, 0));
                        if m.offset() > e.0 {
                            *e = (m.offset(), h.seq, h.sender);
                        }
                    }
                }
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::AcqRel);
                let mut first = self.0.first_error.lock().unwrap();
                if first.is_none() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

/// Producer settings shared by `produce` and `e2e`.
pub fn producer(args: &Args, shared: Arc<Shared>) -> Result<ThreadedProducer<Ctx>, String> {
    let mut c = base_config(args)?;
    c.set("acks", args.str("acks")?);
    c.set("linger.ms", args.str("linger-ms")?);
    c.set("compression.type", "none");
    c.set("statistics.interval.ms", "1000");
    if let Some(n) = args.opt_str("batch-messages") {
        c.set("batch.num.messages", n);
    }
    if let Some(b) = args.opt_u64("batch-bytes")? {
        c.set("batch.size", b.to_string());
    }
    if let Some(t) = args.opt_str("timeout-ms") {
        c.set("message.timeout.ms", t);
    }
    ThreadedProducer::from_config_and_context(&c, Ctx(shared)).map_err(|e| e.to_string())
}

/// Sends one record, waiting while librdkafka's local queue is full (that is the
/// back-pressure of an unbounded run). Returns false on any other error.
pub fn send(
    p: &ThreadedProducer<Ctx>,
    topic: &str,
    partition: Option<i32>,
    buf: &[u8],
    shared: &Shared,
) -> bool {
    let mut rec = BaseRecord::<(), [u8]>::to(topic).payload(buf);
    if let Some(part) = partition {
        rec = rec.partition(part);
    }
    loop {
        match p.send(rec) {
            Ok(()) => return true,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((e, _)) => {
                shared.failed.fetch_add(1, Ordering::AcqRel);
                shared.log.say(format_args!("send: {e}"));
                return false;
            }
        }
    }
}

/// When a paced sender must send its next message, as an offset from its start.
pub fn due(seq: u64, rate_per_s: f64) -> Duration {
    Duration::from_secs_f64(seq as f64 / rate_per_s)
}

/// Sums what librdkafka's statistics say about the requests it sent: produce requests per
/// second and their average size, average batch size (= what the broker appends and syncs
/// per partition per request), and round-trip times.
pub fn request_stats(stats: &Option<Value>, topic: &str) -> Value {
    let Some(s) = stats else {
        return Value::Null;
    };
    let mut tx = 0u64;
    let mut txbytes = 0u64;
    let mut rtt_avg = Vec::new();
    let mut rtt_p50 = Vec::new();
    let mut rtt_p99 = Vec::new();
    if let Some(brokers) = s["brokers"].as_object() {
        for b in brokers.values() {
            if b["nodeid"].as_i64().unwrap_or(-1) < 0 {
                continue; // the bootstrap pseudo-broker
            }
            tx += b["tx"].as_u64().unwrap_or(0);
            txbytes += b["txbytes"].as_u64().unwrap_or(0);
            rtt_avg.push(b["rtt"]["avg"].as_u64().unwrap_or(0));
            rtt_p50.push(b["rtt"]["p50"].as_u64().unwrap_or(0));
            rtt_p99.push(b["rtt"]["p99"].as_u64().unwrap_or(0));
        }
    }
    let t = &s["topics"][topic];
    json!({
        "requests": tx,
        "avg_request_bytes": txbytes.checked_div(tx).unwrap_or(0),
        "avg_batch_bytes": t["batchsize"]["avg"],
        "avg_batch_messages": t["batchcnt"]["avg"],
        "rtt_avg_us_last_interval": rtt_avg.iter().max(),
        "rtt_p50_us_last_interval": rtt_p50.iter().max(),
        "rtt_p99_us_last_interval": rtt_p99.iter().max(),
    })
}

pub fn run(args: &Args) -> Result<Value, String> {
    let topic = args.str("topic")?.to_string();
    let size = args.u64_or("size", 1024)? as usize;
    let producers = args.u64_or("producers", 1)?.max(1) as usize;
    let partitions = args.opt_u64("partitions")?.map(|n| n as i32);
    let duration = args.opt_f64("duration-s")?.map(Duration::from_secs_f64);
    let mut limit = args.opt_u64("messages")?;
    if let Some(b) = args.opt_u64("bytes")? {
        limit = Some(b.div_ceil(size as u64));
    }
    if duration.is_none() && limit.is_none() {
        return Err("give --duration-s, --messages or --bytes".into());
    }
    let rate = args.opt_f64("rate-msgs")?;
    let broker_pid = args.opt_u64("broker-pid")?.map(|p| p as u32);
    let acked_file = args.opt_str("acked-file").map(str::to_string);
    let flush_timeout = Duration::from_millis(args.u64_or("timeout-ms", 300_000)? + 30_000);

    let shared = Arc::new(Shared {
        track: acked_file.is_some(),
        ..Default::default()
    });
    let clients: Vec<_> = (0..producers)
        .map(|_| producer(args, shared.clone()))
        .collect::<Result<_, _>>()?;
    // Connect and learn the partitions before the clock starts: a user's producer is
    // long-lived, so its start-up is not part of its throughput.
    for c in &clients {
        c.client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| format!("metadata for {topic}: {e}"))?;
    }

    let stop = AtomicBool::new(false);
    let window = CpuWindow::start(broker_pid)?;
    let started = Instant::now();
    let sent: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let (topic, shared, stop) = (&topic, &shared, &stop);
                let my_limit = limit
                    .map(|l| l / producers as u64 + u64::from(i == 0) * (l % producers as u64));
                let my_rate = rate.map(|r| r / producers as f64);
                s.spawn(move || {
                    let mut buf = payload::template(size);
                    let mut seq = 0u64;
                    loop {
                        if my_limit.is_some_and(|l| seq >= l) || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let elapsed = started.elapsed();
                        if duration.is_some_and(|d| elapsed >= d) {
                            break;
                        }
                        if let Some(r) = my_rate {
                            let next = due(seq, r);
                            if next > elapsed {
                                std::thread::sleep(next - elapsed);
                                continue;
                            }
                        }
                        payload::stamp(&mut buf, payload::now_ns(), seq, i as u32);
                        let part = partitions.map(|n| ((seq + i as u64) % n as u64) as i32);
                        if !send(client, topic, part, &buf, shared) {
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                        seq += 1;
                    }
                    seq
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let send_elapsed = started.elapsed();
    for c in &clients {
        if let Err(e) = c.flush(flush_timeout) {
            eprintln!("flush: {e}");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = window.stop();

    let acked = shared.acked();
    let bytes = shared.acked_bytes.load(Ordering::Acquire);
    if let Some(path) = &acked_file {
        let last = shared.last_acked.lock().unwrap();
        let parts: BTreeMap<String, Value> = last
            .iter()
            .map(|(p, (o, seq, sender))| (p.to_string(), json!([o, seq, sender])))
            .collect();
        let doc = json!({"topic": topic, "acked": acked, "partitions": parts});
        std::fs::write(path, doc.to_string()).map_err(|e| format!("{path}: {e}"))?;
    }
    let stats = shared.stats();
    Ok(merged(
        cpu.json(),
        json!({
            "topic": topic,
            "size": size,
            "producers": producers,
            "sent": sent,
            "messages": acked,
            "failed": shared.failed(),
            "first_error": *shared.first_error.lock().unwrap(),
            "bytes": bytes,
            "elapsed_s": r3(elapsed),
            "send_elapsed_s": r3(send_elapsed.as_secs_f64()),
            "msgs_per_s": r3(acked as f64 / elapsed),
            "mb_per_s": r3(bytes as f64 / elapsed / 1e6),
            "librdkafka": request_stats(&stats, &topic),
        }),
    ))
}
