//! Prometheus metrics, recorded through the `metrics` facade and rendered by the admin
//! listener's /metrics.

use std::time::Instant;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use proto_kafka::messages::ApiKey;

/// Request latency buckets, seconds: 50 µs to 10 s.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Installs the process-wide recorder; `None` if one is already installed (tests).
pub fn install() -> Option<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS_S)
        .ok()?
        .install_recorder()
        .ok()
}

/// Describes every metric and starts each at zero, so scrapes see the full set from start-up.
pub fn register() {
    describe_counter!("strom_requests_total", "Requests handled, by API");
    describe_counter!(
        "strom_request_errors_total",
        "Requests refused (connection closed) or answered with an error code, by API"
    );
    describe_histogram!(
        "strom_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its response, by API"
    );
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
    describe_counter!(
        "strom_topic_bytes_in_total",
        Unit::Bytes,
        "Record bytes appended, by topic"
    );
    describe_counter!(
        "strom_topic_bytes_out_total",
        Unit::Bytes,
        "Record bytes fetched, by topic"
    );
    describe_gauge!("strom_partitions", "Partitions hosted");
    describe_gauge!(
        "strom_log_size_bytes",
        Unit::Bytes,
        "Bytes in all partition logs"
    );
    for (api, _, _) in crate::request::SUPPORTED_APIS {
        counter!("strom_requests_total", "api" => api_name(*api)).absolute(0);
        counter!("strom_request_errors_total", "api" => api_name(*api)).absolute(0);
    }
    gauge!("strom_connections").set(0.0);
    counter!("strom_connections_accepted_total").absolute(0);
    counter!("strom_network_received_bytes_total").absolute(0);
    counter!("strom_network_sent_bytes_total").absolute(0);
    gauge!("strom_log_size_bytes").set(0.0);
}

pub fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::DescribeTopicPartitions => "DescribeTopicPartitions",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        _ => "Other",
    }
}

pub fn request_done(api: ApiKey, started: Instant) {
    let name = api_name(api);
    counter!("strom_requests_total", "api" => name).increment(1);
    histogram!("strom_request_duration_seconds", "api" => name)
        .record(started.elapsed().as_secs_f64());
}

pub fn request_error(api: &'static str) {
    counter!("strom_request_errors_total", "api" => api).increment(1);
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

pub fn topic_bytes_in(topic: &str, n: usize) {
    counter!("strom_topic_bytes_in_total", "topic" => topic.to_string()).increment(n as u64);
}

pub fn topic_bytes_out(topic: &str, n: usize) {
    counter!("strom_topic_bytes_out_total", "topic" => topic.to_string()).increment(n as u64);
}

pub fn partitions(n: usize) {
    gauge!("strom_partitions").set(n as f64);
}

pub fn log_size(bytes: u64) {
    gauge!("strom_log_size_bytes").set(bytes as f64);
}
