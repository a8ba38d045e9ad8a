//! Prometheus metrics, recorded through the `metrics` facade and rendered by the admin
//! listener's /metrics. Per-topic counters live here rather than in the facade's registry so
//! that a deleted topic's series can go away; everything read from existing state (offsets,
//! sizes, lag, disk, process) is collected at scrape time by [`collect`].

pub mod collect;
mod process;
mod text;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};
use std::time::{Instant, SystemTime};

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use proto_kafka::messages::ApiKey;

/// Request latency buckets, seconds: 50 µs to 10 s.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Request and response size buckets, bytes: 64 B to 64 MiB in powers of 4.
const SIZE_BUCKETS_BYTES: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// fdatasync latency buckets, seconds: 10 µs to 10 s.
const FLUSH_BUCKETS_S: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

static STARTED: OnceLock<(Instant, SystemTime)> = OnceLock::new();

/// Set once a recorder is installed; until then the per-topic counters are not kept either.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Installs the process-wide recorder; `None` if one is already installed (tests).
pub fn install() -> Option<PrometheusHandle> {
    STARTED.get_or_init(|| (Instant::now(), SystemTime::now()));
    ENABLED.store(true, Ordering::Relaxed);
    PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS_S)
        .ok()?
        .set_buckets_for_metric(Matcher::Suffix("_size_bytes".into()), SIZE_BUCKETS_BYTES)
        .ok()?
        .set_buckets_for_metric(
            Matcher::Full("strom_log_flush_duration_seconds".into()),
            FLUSH_BUCKETS_S,
        )
        .ok()?
        .install_recorder()
        .ok()
}

/// Describes every metric and starts each at zero, so scrapes see the full set from start-up.
pub fn register() {
    describe_counter!("strom_requests_total", "Requests handled, by API");
    describe_counter!(
        "strom_request_errors_total",
        "Requests answered with an error code (error: the Kafka error name) or refused by \
         closing the connection (error=\"CONNECTION_CLOSED\"), by API"
    );
    describe_histogram!(
        "strom_produce_request_size_bytes",
        Unit::Bytes,
        "Size of Produce requests as received"
    );
    describe_histogram!(
        "strom_fetch_response_size_bytes",
        Unit::Bytes,
        "Record bytes in each Fetch response"
    );
    describe_histogram!(
        "strom_log_flush_duration_seconds",
        Unit::Seconds,
        "Time of one partition flush (fdatasync of its unsynced segments)"
    );
    describe_counter!(
        "strom_log_retention_deleted_segments_total",
        "Segments deleted by retention (time, size or log start offset)"
    );
    describe_counter!(
        "strom_log_cleaner_runs_total",
        "Compactions that replaced segments"
    );
    describe_counter!(
        "strom_log_cleaner_removed_bytes_total",
        Unit::Bytes,
        "Bytes compaction removed (bytes read minus bytes written)"
    );
    describe_counter!(
        "strom_log_cleaner_removed_records_total",
        "Records and tombstones compaction removed"
    );
    describe_histogram!(
        "strom_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its response, by API"
    );
    for (phase, help) in [
        (
            RequestPhase::Queue,
            "Time a request waits, read whole, for its connection to take it, by API",
        ),
        (
            RequestPhase::Local,
            "Time of a request's own handling until its answer or wait begins, by API",
        ),
        (
            RequestPhase::Remote,
            "Time a request waits for durability, data (long-poll) or its group, by API",
        ),
        (
            RequestPhase::ResponseQueue,
            "Time a ready answer waits for earlier answers of its connection, by API",
        ),
        (
            RequestPhase::ResponseSend,
            "Time to write an answer to the socket, by API",
        ),
    ] {
        describe_histogram!(phase.metric_name(), Unit::Seconds, help);
    }
    describe_gauge!("strom_connections", "Open client connections");
    describe_counter!(
        "strom_connections_accepted_total",
        "Client connections accepted"
    );
    describe_counter!(
        "strom_network_received_bytes_total",
        Unit::Bytes,
        "Request bytes received"
    );
    describe_counter!(
        "strom_network_sent_bytes_total",
        Unit::Bytes,
        "Response bytes sent"
    );
    describe_gauge!("strom_partitions", "Partitions hosted");
    describe_gauge!(
        "strom_log_size_bytes",
        Unit::Bytes,
        "Bytes in all partition logs"
    );
    for spec in strom_protocol::SUPPORTED_APIS {
        counter!("strom_requests_total", "api" => spec.name).absolute(0);
    }
    gauge!("strom_connections").set(0.0);
    counter!("strom_connections_accepted_total").absolute(0);
    counter!("strom_network_received_bytes_total").absolute(0);
    counter!("strom_network_sent_bytes_total").absolute(0);
    gauge!("strom_log_size_bytes").set(0.0);
    counter!("strom_log_retention_deleted_segments_total").absolute(0);
    counter!("strom_log_cleaner_runs_total").absolute(0);
    counter!("strom_log_cleaner_removed_bytes_total").absolute(0);
    counter!("strom_log_cleaner_removed_records_total").absolute(0);
}

/// The API's label in metrics: its name in the one version table (strom-protocol).
pub fn api_name(api: ApiKey) -> &'static str {
    strom_protocol::api_name(api)
}

/// The phases of a request, as Kafka's `RequestMetrics` split its total time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestPhase {
    /// Read whole, waiting to be taken by the connection (`RequestQueueTimeMs`).
    Queue,
    /// The handler's own work until its answer or its wait begins (`LocalTimeMs`).
    Local,
    /// Waiting for durability (acks) or data (a parked fetch), or a group's rebalance
    /// (`RemoteTimeMs`).
    Remote,
    /// Ready, waiting for the answers before it in request order (`ResponseQueueTimeMs`).
    ResponseQueue,
    /// Writing the answer to the socket (`ResponseSendTimeMs`).
    ResponseSend,
}

impl RequestPhase {
    pub fn metric_name(self) -> &'static str {
        match self {
            RequestPhase::Queue => "strom_request_queue_time_seconds",
            RequestPhase::Local => "strom_request_local_time_seconds",
            RequestPhase::Remote => "strom_request_remote_time_seconds",
            RequestPhase::ResponseQueue => "strom_response_queue_time_seconds",
            RequestPhase::ResponseSend => "strom_response_send_time_seconds",
        }
    }
}

pub fn request_phase(api: &'static str, phase: RequestPhase, took: std::time::Duration) {
    histogram!(phase.metric_name(), "api" => api).record(took.as_secs_f64());
}

pub fn request_done(api: ApiKey, started: Instant) {
    let name = api_name(api);
    counter!("strom_requests_total", "api" => name).increment(1);
    histogram!("strom_request_duration_seconds", "api" => name)
        .record(started.elapsed().as_secs_f64());
}

/// A request refused by closing the connection (undecodable, unsupported version).
pub fn request_error(api: &'static str) {
    counter!("strom_request_errors_total", "api" => api, "error" => "CONNECTION_CLOSED")
        .increment(1);
}

/// A request answered with Kafka error `code` (for one of its partitions or as a whole).
pub fn request_error_code(api: &'static str, code: i16) {
    counter!("strom_request_errors_total", "api" => api, "error" => error_name(code)).increment(1);
}

/// A Fetch response is ready: its record bytes and data records per topic (`records_by_topic`
/// beside `topics`, counted from the batch headers as the log read them), its size, its error
/// codes. `image_of` gives the metadata image, asked for only when a topic is named by id.
pub fn fetch_done(
    image_of: impl FnOnce() -> std::sync::Arc<strom_metadata::MetadataImage>,
    topics: &[proto_kafka::messages::fetch_response::FetchableTopicResponse],
    records_by_topic: &[u64],
    bytes: usize,
) {
    histogram!("strom_fetch_response_size_bytes").record(bytes as f64);
    let mut image_of = Some(image_of);
    let mut image = None;
    for (i, t) in topics.iter().enumerate() {
        let topic_records = records_by_topic.get(i).copied().unwrap_or(0);
        let mut topic_bytes = 0usize;
        for p in &t.partitions {
            topic_bytes += p.records.as_ref().map_or(0, |r| r.len());
            if p.error_code != 0 {
                request_error_code("Fetch", p.error_code);
            }
        }
        if topic_bytes == 0 {
            continue;
        }
        if !t.topic.is_empty() {
            topic_out(&t.topic, topic_bytes, topic_records);
        } else {
            // Fetch v13+ names topics by id only.
            if image.is_none() {
                image = image_of.take().map(|f| f());
            }
            let Some(image) = image.as_ref() else {
                continue;
            };
            if let Some(topic) = image.topic_by_id(&t.topic_id) {
                topic_out(&topic.name, topic_bytes, topic_records);
            }
        }
    }
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), as its metrics label it.
pub fn error_name(code: i16) -> &'static str {
    use proto_kafka::ResponseError;
    static NAMES: LazyLock<Mutex<HashMap<i16, &'static str>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut names = match NAMES.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(n) = names.get(&code) {
        return n;
    }
    let err = match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(_)) | None => return "UNKNOWN",
        Some(e) => e,
    };
    // Leaked once per known code: the set of codes is fixed and small.
    let name: &'static str = Box::leak(screaming_snake(&format!("{err:?}")).into_boxed_str());
    names.insert(code, name);
    name
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

pub fn request_received(api: ApiKey, n: usize) {
    bytes_received(n);
    if api == ApiKey::Produce {
        histogram!("strom_produce_request_size_bytes").record(n as f64);
    }
}

pub fn log_flushed(started: Instant) {
    histogram!("strom_log_flush_duration_seconds").record(started.elapsed().as_secs_f64());
}

pub fn retention_deleted(segments: usize) {
    counter!("strom_log_retention_deleted_segments_total").increment(segments as u64);
}

pub fn compacted(bytes_removed: u64, records_removed: u64) {
    counter!("strom_log_cleaner_runs_total").increment(1);
    counter!("strom_log_cleaner_removed_bytes_total").increment(bytes_removed);
    counter!("strom_log_cleaner_removed_records_total").increment(records_removed);
}

pub fn connection_opened() {
    gauge!("strom_connections").increment(1.0);
    counter!("strom_connections_accepted_total").increment(1);
}

pub fn connection_closed() {
    gauge!("strom_connections").decrement(1.0);
}

pub fn bytes_received(n: usize) {
    counter!("strom_network_received_bytes_total").increment(n as u64);
}

pub fn bytes_sent(n: usize) {
    counter!("strom_network_sent_bytes_total").increment(n as u64);
}

/// The hot-path counters of one topic.
#[derive(Default)]
pub(crate) struct TopicCounters {
    pub bytes_in: AtomicU64,
    pub records_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub records_out: AtomicU64,
}

static TOPICS: LazyLock<RwLock<HashMap<String, Arc<TopicCounters>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

fn topic_counters(topic: &str) -> Arc<TopicCounters> {
    if let Some(c) = match TOPICS.read() {
        Ok(g) => g.get(topic).cloned(),
        Err(p) => p.into_inner().get(topic).cloned(),
    } {
        return c;
    }
    let mut map = match TOPICS.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    map.entry(topic.to_string()).or_default().clone()
}

/// The per-topic counters of the topics in `keep`; the others' (deleted topics) are dropped,
/// so their series leave /metrics.
pub(crate) fn topic_counters_retain(
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, Arc<TopicCounters>)> {
    let mut map = match TOPICS.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    map.retain(|t, _| keep(t));
    let mut out: Vec<_> = map.iter().map(|(t, c)| (t.clone(), c.clone())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn topic_bytes_in(topic: &str, bytes: usize, records: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let c = topic_counters(topic);
    c.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    c.records_in.fetch_add(records, Ordering::Relaxed);
}

/// Record bytes and data records sent to fetchers of `topic`.
pub fn topic_out(topic: &str, bytes: usize, records: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let c = topic_counters(topic);
    c.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    c.records_out.fetch_add(records, Ordering::Relaxed);
}

/// When the process started (the recorder's installation), for uptime.
pub(crate) fn started() -> (Instant, SystemTime) {
    *STARTED.get_or_init(|| (Instant::now(), SystemTime::now()))
}

pub fn partitions(n: usize) {
    gauge!("strom_partitions").set(n as f64);
}

pub fn log_size(bytes: u64) {
    gauge!("strom_log_size_bytes").set(bytes as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(1), "OFFSET_OUT_OF_RANGE");
        assert_eq!(error_name(25), "UNKNOWN_MEMBER_ID");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(i16::MAX), "UNKNOWN");
    }

    #[test]
    fn deleted_topics_lose_their_counters() {
        ENABLED.store(true, Ordering::Relaxed);
        topic_bytes_in("metrics-test-kept", 100, 4);
        topic_bytes_in("metrics-test-deleted", 10, 1);
        topic_out("metrics-test-kept", 7, 0);
        topic_out("metrics-test-kept", 5, 3);
        let kept = topic_counters_retain(|t| t != "metrics-test-deleted");
        let (_, c) = kept
            .iter()
            .find(|(t, _)| t == "metrics-test-kept")
            .expect("kept topic");
        assert_eq!(c.bytes_in.load(Ordering::Relaxed), 100);
        assert_eq!(c.records_in.load(Ordering::Relaxed), 4);
        assert_eq!(c.bytes_out.load(Ordering::Relaxed), 12);
        assert_eq!(c.records_out.load(Ordering::Relaxed), 3);
        assert!(!kept.iter().any(|(t, _)| t == "metrics-test-deleted"));
        assert!(topic_counters_retain(|_| true)
            .iter()
            .all(|(t, _)| t != "metrics-test-deleted"));
    }
}
