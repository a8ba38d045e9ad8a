//! Series collected when /metrics is scraped, from state the broker keeps anyway: nothing on
//! the produce or fetch path pays for them, and a deleted topic's or group's series vanish
//! with it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use super::text::Exposition;
use crate::broker::Broker;
use crate::partition::PartitionLog;

/// The git commit this binary was built from (build.rs), or "unknown".
pub const BUILD_COMMIT: &str = env!("STROM_BUILD_COMMIT");

/// A family read from one kind of value: name, help, getter.
type Family<T> = (&'static str, &'static str, fn(&T) -> f64);

/// Everything scrape-time, in the text format, to append to the recorder's rendering.
pub fn render(broker: &Broker) -> String {
    let mut e = Exposition::new();
    build_and_process(&mut e, broker);
    disk(&mut e, broker);
    topics(&mut e, broker);
    groups(&mut e, broker);
    e.finish()
}

fn build_and_process(e: &mut Exposition, broker: &Broker) {
    e.family(
        "strom_build_info",
        "gauge",
        "Always 1; labels: the version and git commit of this binary",
    );
    e.sample(
        "strom_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", BUILD_COMMIT),
        ],
        1.0,
    );
    let (started, started_wall) = super::started();
    e.single(
        "strom_uptime_seconds",
        "gauge",
        "Seconds since the process started",
        started.elapsed().as_secs_f64(),
    );
    if let Ok(d) = started_wall.duration_since(UNIX_EPOCH) {
        e.single(
            "strom_start_time_seconds",
            "gauge",
            "When the process started, seconds since the Unix epoch",
            d.as_secs_f64(),
        );
    }
    e.single(
        "strom_log_segment_rolls_total",
        "counter",
        "Segments rolled (by size, age, index space or request) in every partition log",
        strom_log::log::SEGMENT_ROLLS.load(Ordering::Relaxed) as f64,
    );
    e.single(
        "strom_connections_max",
        "gauge",
        "max.connections: client connections accepted at most",
        broker.config.max_connections as f64,
    );
    e.single(
        "strom_partitions_max",
        "gauge",
        "Partitions this node can host (the bound, or fewer if open files run out first)",
        broker.max_partitions as f64,
    );
    e.single(
        "strom_metadata_publish_errors_total",
        "counter",
        "Committed metadata changes a publisher (replicas, groups, metrics) failed to apply (Kafka's metadata-apply-error-count)",
        broker.loader.publish_errors_total() as f64,
    );
    let p = super::process::read();
    let mut opt = |name: &str, kind: &str, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            e.single(name, kind, help, v);
        }
    };
    opt(
        "strom_process_cpu_seconds_total",
        "counter",
        "User and system CPU time of the process, seconds",
        p.cpu_seconds,
    );
    opt(
        "strom_process_resident_memory_bytes",
        "gauge",
        "Resident set size, bytes",
        p.resident_bytes.map(|v| v as f64),
    );
    opt(
        "strom_process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size, bytes",
        p.virtual_bytes.map(|v| v as f64),
    );
    opt(
        "strom_process_threads",
        "gauge",
        "Operating-system threads of the process",
        p.threads.map(|v| v as f64),
    );
    opt(
        "strom_process_open_fds",
        "gauge",
        "Open file descriptors (segments, sockets, ...)",
        p.open_fds.map(|v| v as f64),
    );
    opt(
        "strom_process_max_fds",
        "gauge",
        "Soft limit on open file descriptors (RLIMIT_NOFILE)",
        p.max_fds.map(|v| v as f64),
    );
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let m = rt.metrics();
        e.single(
            "strom_tokio_workers",
            "gauge",
            "Worker threads of the async runtime",
            m.num_workers() as f64,
        );
        e.single(
            "strom_tokio_alive_tasks",
            "gauge",
            "Tasks alive in the async runtime",
            m.num_alive_tasks() as f64,
        );
        e.single(
            "strom_tokio_global_queue_depth",
            "gauge",
            "Tasks waiting in the runtime's global queue",
            m.global_queue_depth() as f64,
        );
    }
}

fn disk(e: &mut Exposition, broker: &Broker) {
    let dir = broker.config.log_dir.display().to_string();
    let Ok((total, available)) = crate::disk_space::of(&broker.config.log_dir) else {
        return;
    };
    let labels = [("dir", dir.as_str())];
    e.family(
        "strom_disk_total_bytes",
        "gauge",
        "Size of the filesystem holding the data directory, bytes",
    );
    e.sample("strom_disk_total_bytes", &labels, total as f64);
    e.family(
        "strom_disk_free_bytes",
        "gauge",
        "Bytes of the data directory's filesystem available to Strom",
    );
    e.sample("strom_disk_free_bytes", &labels, available as f64);
    e.family(
        "strom_disk_used_bytes",
        "gauge",
        "Bytes of the data directory's filesystem not available to Strom (all users)",
    );
    e.sample(
        "strom_disk_used_bytes",
        &labels,
        total.saturating_sub(available) as f64,
    );
}

/// One partition's state at the scrape.
struct PartitionState {
    topic: String,
    partition: i32,
    log_start: i64,
    log_end: i64,
    high_watermark: i64,
    size_bytes: u64,
    segments: usize,
    dirty_bytes: Option<u64>,
}

#[derive(Default)]
struct TopicSums {
    partitions: u64,
    size_bytes: u64,
    segments: u64,
    log_start: i64,
    high_watermark: i64,
    /// None unless the topic is compacted.
    dirty_bytes: Option<u64>,
}

fn topics(e: &mut Exposition, broker: &Broker) {
    let image = broker.image();
    let counters = super::topic_counters_retain(|t| image.topic(t).is_some());
    let families: [Family<super::TopicCounters>; 4] = [
        (
            "strom_topic_bytes_in_total",
            "Record bytes appended (retried duplicates excluded), by topic",
            |c| c.bytes_in.load(Ordering::Relaxed) as f64,
        ),
        (
            "strom_topic_records_in_total",
            "Records appended (retried duplicates excluded), by topic",
            |c| c.records_in.load(Ordering::Relaxed) as f64,
        ),
        (
            "strom_topic_bytes_out_total",
            "Record bytes sent to fetchers, by topic",
            |c| c.bytes_out.load(Ordering::Relaxed) as f64,
        ),
        (
            "strom_topic_records_out_total",
            "Records sent to fetchers (those of the batches sent, transaction markers left out), \
             by topic",
            |c| c.records_out.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, help, get) in families {
        e.family(name, "counter", help);
        for (topic, c) in &counters {
            e.sample(name, &[("topic", topic)], get(c));
        }
    }

    let mut parts: Vec<PartitionState> = broker
        .replicas
        .all()
        .into_iter()
        .filter_map(|p| {
            let high_watermark = p.high_watermark();
            let (log_start, log_end, size_bytes, segments, dirty_bytes) = p
                .with_log(|log| {
                    (
                        log.log_start_offset(),
                        log.log_end_offset(),
                        log.size_bytes(),
                        log.segment_count(),
                        log.dirty_bytes(),
                    )
                })
                .ok()?;
            Some(PartitionState {
                topic: p.topic_partition.topic.clone(),
                partition: p.topic_partition.partition,
                log_start,
                log_end,
                high_watermark,
                size_bytes,
                segments,
                dirty_bytes,
            })
        })
        .collect();
    // Shared-storage partitions have no segments or dirty bytes of their own (their batches
    // lie in intake objects): their log ends at the high watermark, as nothing is visible
    // before its commit.
    parts.extend(broker.replicas.all_shared().into_iter().filter_map(|p| {
        let high_watermark = p.high_watermark();
        Some(PartitionState {
            topic: p.topic_partition().topic.clone(),
            partition: p.topic_partition().partition,
            log_start: p.log_start_offset().ok()?,
            log_end: p.log_end_offset().ok()?,
            high_watermark,
            size_bytes: p.size_bytes().ok()?,
            segments: 0,
            dirty_bytes: None,
        })
    }));
    parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));

    let mut sums: BTreeMap<&str, TopicSums> = BTreeMap::new();
    for p in &parts {
        let s = sums.entry(&p.topic).or_default();
        s.partitions += 1;
        s.size_bytes += p.size_bytes;
        s.segments += p.segments as u64;
        s.log_start += p.log_start;
        s.high_watermark += p.high_watermark;
        if let Some(d) = p.dirty_bytes {
            *s.dirty_bytes.get_or_insert(0) += d;
        }
    }
    let topic_families: [Family<TopicSums>; 5] = [
        (
            "strom_topic_partitions",
            "Partitions of the topic hosted here",
            |s| s.partitions as f64,
        ),
        (
            "strom_topic_size_bytes",
            "Bytes of the topic's logs on disk",
            |s| s.size_bytes as f64,
        ),
        (
            "strom_topic_log_segments",
            "Segments of the topic's logs (grows by one at each roll)",
            |s| s.segments as f64,
        ),
        (
            "strom_topic_log_start_offset",
            "Sum over the topic's partitions of the log start offset",
            |s| s.log_start as f64,
        ),
        (
            "strom_topic_high_watermark",
            "Sum over the topic's partitions of the high watermark (records retained: this \
             minus strom_topic_log_start_offset)",
            |s| s.high_watermark as f64,
        ),
    ];
    for (name, help, get) in topic_families {
        e.family(name, "gauge", help);
        for (topic, s) in &sums {
            e.sample(name, &[("topic", topic)], get(s));
        }
    }

    e.family(
        "strom_topic_cleaner_dirty_bytes",
        "gauge",
        "Of a compacted topic, the sealed bytes not yet compacted (the cleaner's backlog)",
    );
    for (topic, s) in &sums {
        if let Some(d) = s.dirty_bytes {
            e.sample(
                "strom_topic_cleaner_dirty_bytes",
                &[("topic", topic)],
                d as f64,
            );
        }
    }

    let cfg = &broker.config;
    let per_partition =
        cfg.metrics_partition_labels_enable && parts.len() <= cfg.metrics_partition_labels_max;
    e.single(
        "strom_metrics_partition_labels_truncated",
        "gauge",
        "1 when metrics.partition.labels.enable is on but more partitions than \
         metrics.partition.labels.max are hosted, so per-partition series are left out",
        (cfg.metrics_partition_labels_enable && !per_partition) as u8 as f64,
    );
    if !per_partition {
        return;
    }
    let partition_families: [Family<PartitionState>; 5] = [
        (
            "strom_partition_log_start_offset",
            "First offset of the partition's log",
            |p| p.log_start as f64,
        ),
        (
            "strom_partition_log_end_offset",
            "Offset the next appended record gets",
            |p| p.log_end as f64,
        ),
        (
            "strom_partition_high_watermark",
            "Offset up to which consumers can read",
            |p| p.high_watermark as f64,
        ),
        (
            "strom_partition_size_bytes",
            "Bytes of the partition's log on disk",
            |p| p.size_bytes as f64,
        ),
        (
            "strom_partition_log_segments",
            "Segments of the partition's log",
            |p| p.segments as f64,
        ),
    ];
    for (name, help, get) in partition_families {
        e.family(name, "gauge", help);
        for p in &parts {
            let partition = p.partition.to_string();
            e.sample(
                name,
                &[("topic", &p.topic), ("partition", &partition)],
                get(p),
            );
        }
    }
}

/// A group's committed offsets on one topic, with the lag of each.
struct GroupTopic {
    group: String,
    topic: String,
    /// (partition, committed offset, lag)
    partitions: Vec<(i32, i64, i64)>,
}

fn groups(e: &mut Exposition, broker: &Broker) {
    let listing = broker.groups.list();
    e.family(
        "strom_consumer_group_state",
        "gauge",
        "Always 1; labels: the group's state and type (classic or consumer)",
    );
    for g in &listing {
        e.sample(
            "strom_consumer_group_state",
            &[
                ("group", &g.group_id),
                ("state", g.state),
                ("type", g.group_type),
            ],
            1.0,
        );
    }
    e.family(
        "strom_consumer_group_members",
        "gauge",
        "Members of the group",
    );
    for g in &listing {
        let members = broker
            .groups
            .describe(&g.group_id)
            .map_or(0, |s| s.members.len());
        e.sample(
            "strom_consumer_group_members",
            &[("group", &g.group_id)],
            members as f64,
        );
    }

    let mut committed: Vec<GroupTopic> = Vec::new();
    for g in &listing {
        for (topic, partitions) in broker.groups.fetch_offsets(&g.group_id, None) {
            let partitions: Vec<(i32, i64, i64)> = partitions
                .into_iter()
                .filter_map(|(p, c)| {
                    let c = c?;
                    // A partition not hosted here (its topic deleted) has no lag to give.
                    let hw = broker.replicas.get(&topic, p)?.high_watermark();
                    Some((p, c.offset, lag(hw, c.offset)))
                })
                .collect();
            if !partitions.is_empty() {
                committed.push(GroupTopic {
                    group: g.group_id.clone(),
                    topic,
                    partitions,
                });
            }
        }
    }
    let topic_families: [Family<GroupTopic>; 3] = [
        (
            "strom_consumer_group_lag",
            "Records behind the high watermark, summed over the topic's partitions with a \
             committed offset",
            |g| g.partitions.iter().map(|p| p.2).sum::<i64>() as f64,
        ),
        (
            "strom_consumer_group_lag_max",
            "Largest lag of one of the topic's partitions",
            |g| g.partitions.iter().map(|p| p.2).max().unwrap_or(0) as f64,
        ),
        (
            "strom_consumer_group_topic_committed_offset",
            "Sum of the group's committed offsets on the topic",
            |g| g.partitions.iter().map(|p| p.1).sum::<i64>() as f64,
        ),
    ];
    for (name, help, get) in topic_families {
        e.family(name, "gauge", help);
        for g in &committed {
            e.sample(name, &[("group", &g.group), ("topic", &g.topic)], get(g));
        }
    }

    let cfg = &broker.config;
    let pairs: usize = committed.iter().map(|g| g.partitions.len()).sum();
    if !cfg.metrics_partition_labels_enable || pairs > cfg.metrics_partition_labels_max {
        return;
    }
    let partition_families: [(&str, &str, bool); 2] = [
        (
            "strom_consumer_group_partition_lag",
            "Records between the group's committed offset and the high watermark",
            true,
        ),
        (
            "strom_consumer_group_committed_offset",
            "The group's committed offset",
            false,
        ),
    ];
    for (name, help, is_lag) in partition_families {
        e.family(name, "gauge", help);
        for g in &committed {
            for &(p, offset, lag) in &g.partitions {
                let partition = p.to_string();
                e.sample(
                    name,
                    &[
                        ("group", &g.group),
                        ("topic", &g.topic),
                        ("partition", &partition),
                    ],
                    if is_lag { lag } else { offset } as f64,
                );
            }
        }
    }
}

/// Kafka's tools count lag from the high watermark; a commit past it (possible after the
/// log was truncated) is no lag rather than a negative one.
fn lag(high_watermark: i64, committed: i64) -> i64 {
    high_watermark.saturating_sub(committed).max(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lag_is_never_negative() {
        assert_eq!(super::lag(10, 4), 6);
        assert_eq!(super::lag(10, 12), 0);
        assert_eq!(super::lag(0, -1), 1);
    }
}
