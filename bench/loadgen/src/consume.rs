//! Consuming subcommands: `consume` (throughput from a warm log), `e2e` (produce-to-consume
//! latency under a paced load) and `verify` (the crash test's check of acknowledged data).
//!
//! Strom has no consumer groups yet, so every consumer uses assign() with explicit offsets;
//! librdkafka still wants a group.id string, and nothing is ever committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::args::Args;
use crate::payload;
use crate::procstat::CpuWindow;
use crate::produce::{self, Shared};
use crate::{base_config, merged, ms, r3, QuietContext};

const META_TIMEOUT: Duration = Duration::from_secs(10);

fn consumer(args: &Args) -> Result<BaseConsumer<QuietContext>, String> {
    let mut c = base_config(args)?;
    c.set("group.id", "strom-bench");
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("auto.offset.reset", "earliest");
    // A bigger per-partition fetch than librdkafka's 1 MiB default: the figure is meant to
    // be the broker's read path, not a client starved by small requests. Overridable with
    // --rdkafka max.partition.fetch.bytes=...
    c.set("max.partition.fetch.bytes", "4194304");
    BaseConsumer::from_config_and_context(&c, QuietContext::default()).map_err(|e| e.to_string())
}

/// (low, high) watermarks of partitions 0..n.
fn watermarks(
    c: &BaseConsumer<QuietContext>,
    topic: &str,
    n: i32,
) -> Result<Vec<(i64, i64)>, String> {
    (0..n)
        .map(|p| {
            c.fetch_watermarks(topic, p, META_TIMEOUT)
                .map_err(|e| format!("watermarks of {topic}-{p}: {e}"))
        })
        .collect()
}

pub fn run_consume(args: &Args) -> Result<Value, String> {
    let topic = args.str("topic")?.to_string();
    let n = args.u64_or("partitions", 4)? as i32;
    let max_messages = args.opt_u64("max-messages")?;
    let idle_timeout = Duration::from_secs(args.u64_or("idle-timeout-s", 10)?);
    let broker_pid = args.opt_u64("broker-pid")?.map(|p| p as u32);
    let c = consumer(args)?;
    let marks = watermarks(&c, &topic, n)?;
    let mut tpl = TopicPartitionList::new();
    let mut available = 0i64;
    for (p, (lo, hi)) in marks.iter().enumerate() {
        available += hi - lo;
        tpl.add_partition_offset(&topic, p as i32, Offset::Offset(*lo))
            .map_err(|e| e.to_string())?;
    }
    let target = max_messages.map_or(available as u64, |m| m.min(available as u64));

    let window = CpuWindow::start(broker_pid)?;
    let started = Instant::now();
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let (mut count, mut bytes, mut bad) = (0u64, 0u64, 0u64);
    let mut first_at = None;
    let mut last_progress = Instant::now();
    while count < target {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first_at.get_or_insert_with(Instant::now);
                let p = m.payload().unwrap_or(&[]);
                bytes += p.len() as u64;
                if payload::header(p).is_none() {
                    bad += 1;
                }
                count += 1;
                last_progress = Instant::now();
            }
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {
                if last_progress.elapsed() > idle_timeout {
                    eprintln!(
                        "consume: no progress for {idle_timeout:?}; stopping at {count}/{target}"
                    );
                    break;
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = window.stop();
    Ok(merged(
        cpu.json(),
        json!({
            "topic": topic,
            "partitions": n,
            "available": available,
            "messages": count,
            "bytes": bytes,
            "bad_messages": bad,
            "elapsed_s": r3(elapsed),
            "time_to_first_ms": first_at.map(|t| r3(t.duration_since(started).as_secs_f64() * 1e3)),
            "msgs_per_s": r3(count as f64 / elapsed),
            "mb_per_s": r3(bytes as f64 / elapsed / 1e6),
        }),
    ))
}

/// `e2e`: a paced producer and a consumer (its own thread) in one process. Each message
/// carries its send time; the consumer records now - send time in an HDR histogram. The
/// first --warmup-s seconds (connections, first metadata, page-cache growth) are not
/// recorded. Latency includes librdkafka's queues on both sides, the broker's fsync before
/// the high watermark moves, and the consumer's fetch: what an application would see.
///
/// --topic T --partitions N --size B --rate-mbps R (0 or absent: unbounded) --duration-s S
/// --warmup-s W --acks all --linger-ms 0 [--broker-pid PID]
pub fn run_e2e(args: &Args) -> Result<Value, String> {
    let topic = args.str("topic")?.to_string();
    let n = args.u64_or("partitions", 4)? as i32;
    let size = args.u64_or("size", 1024)? as usize;
    let rate_mbps = args.f64_or("rate-mbps", 0.0)?;
    let rate_msgs = (rate_mbps > 0.0).then(|| rate_mbps * 1e6 / size as f64);
    let duration = Duration::from_secs_f64(args.f64_or("duration-s", 10.0)?);
    let warmup = Duration::from_secs_f64(args.f64_or("warmup-s", 2.0)?);
    let broker_pid = args.opt_u64("broker-pid")?.map(|p| p as u32);

    // The consumer starts at the current end of every partition, so it sees only this run.
    let c = consumer(args)?;
    let marks = watermarks(&c, &topic, n)?;
    let mut tpl = TopicPartitionList::new();
    for (p, (_, hi)) in marks.iter().enumerate() {
        tpl.add_partition_offset(&topic, p as i32, Offset::Offset(*hi))
            .map_err(|e| e.to_string())?;
    }
    c.assign(&tpl).map_err(|e| e.to_string())?;

    let shared = Arc::new(Shared::default());
    let producer = produce::producer(args, shared.clone())?;
    producer
        .client()
        .fetch_metadata(Some(&topic), META_TIMEOUT)
        .map_err(|e| e.to_string())?;
    use rdkafka::producer::Producer;

    let sending_done = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let t0 = payload::now_ns();
    let warm_end_ns = t0 + warmup.as_nanos() as u64;
    let send_end_ns = t0 + duration.as_nanos() as u64;

    let ((hist, received, measured, bad), cpu) = std::thread::scope(|s| {
        let consumer_thread = s.spawn(|| {
            let mut hist = Histogram::<u64>::new_with_bounds(1_000, 120_000_000_000, 3).unwrap();
            let (mut received, mut measured, mut bad) = (0u64, 0u64, 0u64);
            let mut last_progress = Instant::now();
            loop {
                if sending_done.load(Ordering::Acquire) {
                    let expected = shared.acked();
                    if received >= expected || last_progress.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                match c.poll(Duration::from_millis(20)) {
                    Some(Ok(m)) => {
                        let now = payload::now_ns();
                        received += 1;
                        last_progress = Instant::now();
                        match m.payload().and_then(payload::header) {
                            Some(h) if h.send_ns >= warm_end_ns && h.send_ns < send_end_ns => {
                                hist.saturating_record(now.saturating_sub(h.send_ns).max(1_000));
                                measured += 1;
                            }
                            Some(_) => {}
                            None => bad += 1,
                        }
                    }
                    Some(Err(e)) => eprintln!("e2e consumer: {e}"),
                    None => {}
                }
            }
            (hist, received, measured, bad)
        });

        // The producer paces on this thread: message i is due at t0 + i / rate. A sender
        // that falls behind catches up at once, and its late messages carry their real send
        // time, so the recorded latency hides none of the lag.
        let started = Instant::now();
        let mut buf = payload::template(size);
        let mut seq = 0u64;
        let mut window = None;
        loop {
            let elapsed = started.elapsed();
            if elapsed >= duration {
                break;
            }
            if window.is_none() && elapsed >= warmup {
                window = Some(CpuWindow::start(broker_pid));
            }
            if let Some(r) = rate_msgs {
                let next = produce::due(seq, r);
                if next > elapsed {
                    std::thread::sleep(next - elapsed);
                    continue;
                }
            }
            payload::stamp(&mut buf, payload::now_ns(), seq, 0);
            let part = (seq % n as u64) as i32;
            if !produce::send(&producer, &topic, Some(part), &buf, &shared) {
                break;
            }
            seq += 1;
        }
        let cpu = window.and_then(|w| w.ok()).map(|w| w.stop());
        sent.store(seq, Ordering::Release);
        if let Err(e) = producer.flush(Duration::from_secs(60)) {
            eprintln!("e2e flush: {e}");
        }
        sending_done.store(true, Ordering::Release);
        (consumer_thread.join().unwrap(), cpu)
    });
    let measured_s = duration.saturating_sub(warmup).as_secs_f64();
    let pct = |q: f64| ms(hist.value_at_quantile(q));
    let cpu = cpu.map_or(Value::Null, |c| c.json());
    Ok(merged(
        cpu,
        json!({
            "topic": topic,
            "size": size,
            "target_mb_per_s": rate_mbps,
            "sent": sent.load(Ordering::Acquire),
            "acked": shared.acked(),
            "failed": shared.failed(),
            "received": received,
            "bad_messages": bad,
            "measured_messages": measured,
            "measured_s": r3(measured_s),
            "msgs_per_s": r3(measured as f64 / measured_s),
            "mb_per_s": r3(measured as f64 * size as f64 / measured_s / 1e6),
            "p50_ms": pct(0.5),
            "p90_ms": pct(0.9),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "max_ms": ms(hist.max()),
            "min_ms": ms(hist.min()),
            // The producer's view (librdkafka statistics, last interval): produce round trips
            // include the broker's fdatasync, so they split latency into produce and consume.
            "producer": produce::request_stats(&shared.stats(), &topic),
        }),
    ))
}

/// `verify --acked-file F`: after a kill -9 and restart, every partition's high watermark
/// must be past the last offset the producer saw acknowledged, and the message at that
/// offset must be the one acknowledged (same sender and sequence, intact pattern).
pub fn run_verify(args: &Args) -> Result<Value, String> {
    let path = args.str("acked-file")?;
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?)
            .map_err(|e| format!("{path}: {e}"))?;
    let topic = doc["topic"]
        .as_str()
        .ok_or("acked file: no topic")?
        .to_string();
    let n = args.u64_or("partitions", 0)? as i32;
    let mut acked: BTreeMap<i32, (i64, u64, u32)> = BTreeMap::new();
    for (p, v) in doc["partitions"]
        .as_object()
        .ok_or("acked file: no partitions")?
    {
        let p: i32 = p.parse().map_err(|_| "acked file: bad partition")?;
        let f = |i: usize| v[i].as_i64().unwrap_or(-1);
        acked.insert(p, (f(0), f(1) as u64, f(2) as u32));
    }
    let c = consumer(args)?;
    let parts = n.max(acked.keys().max().map_or(0, |m| m + 1));
    let marks = watermarks(&c, &topic, parts)?;
    let hw_sum: i64 = marks.iter().map(|(_, hi)| hi).sum();
    let mut lost = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for (&p, &(off, _, _)) in &acked {
        if marks[p as usize].1 <= off {
            lost.push(
                json!({"partition": p, "acked_offset": off, "high_watermark": marks[p as usize].1}),
            );
        }
        tpl.add_partition_offset(&topic, p, Offset::Offset(off))
            .map_err(|e| e.to_string())?;
    }
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let mut seen: BTreeMap<i32, Result<(), String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < acked.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let p = m.partition();
            let Some(&(off, seq, sender)) = acked.get(&p) else {
                continue;
            };
            if seen.contains_key(&p) {
                continue;
            }
            let verdict = if m.offset() != off {
                Err(format!("first message at offset {} not {off}", m.offset()))
            } else {
                match payload::check(m.payload().unwrap_or(&[])) {
                    Ok(h) if h.seq == seq && h.sender == sender => Ok(()),
                    Ok(h) => Err(format!(
                        "offset {off} holds sender {} seq {}, acknowledged was sender {sender} seq {seq}",
                        h.sender, h.seq
                    )),
                    Err(e) => Err(e),
                }
            };
            seen.insert(p, verdict);
        }
    }
    let content_ok = seen.values().filter(|v| v.is_ok()).count();
    let problems: Vec<String> = seen
        .iter()
        .filter_map(|(p, v)| v.as_ref().err().map(|e| format!("{topic}-{p}: {e}")))
        .chain(
            acked
                .keys()
                .filter(|p| !seen.contains_key(p))
                .map(|p| format!("{topic}-{p}: acknowledged message not readable")),
        )
        .collect();
    Ok(json!({
        "topic": topic,
        "acked_messages": doc["acked"],
        "partitions_with_acks": acked.len(),
        "high_watermark_sum": hw_sum,
        "lost": lost,
        "content_checked": acked.len(),
        "content_ok": content_ok,
        "problems": problems,
        "ok": lost.is_empty() && problems.is_empty(),
    }))
}
