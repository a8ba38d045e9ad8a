//! `create-topics` and `metadata`.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{json, Value};

use crate::args::Args;
use crate::{base_config, block_on, r3, QuietContext};

/// `create-topics --prefix P --count N --partitions K [--per-request M] [--config k=v,...]`
/// creates topics P-0000 .. P-(N-1) (or just `--prefix` itself when --count is absent),
/// M topics per CreateTopics request.
pub fn create_topics(args: &Args) -> Result<Value, String> {
    let prefix = args.str("prefix")?;
    let count = args.opt_u64("count")?;
    let partitions = args.u64_or("partitions", 4)? as i32;
    let per_request = args.u64_or("per-request", 50)?.max(1) as usize;
    let configs: Vec<(String, String)> = args
        .opt_str("config")
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("--config {kv:?}: expected key=value"))
        })
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = match count {
        None => vec![prefix.to_string()],
        Some(n) => (0..n).map(|i| format!("{prefix}-{i:04}")).collect(),
    };
    let admin: AdminClient<QuietContext> =
        AdminClient::from_config_and_context(&base_config(args)?, QuietContext::default())
            .map_err(|e| e.to_string())?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let started = Instant::now();
    let mut created = 0;
    for chunk in names.chunks(per_request) {
        let topics: Vec<NewTopic> = chunk
            .iter()
            .map(|n| {
                configs.iter().fold(
                    NewTopic::new(n, partitions, TopicReplication::Fixed(1)),
                    |t, (k, v)| t.set(k, v),
                )
            })
            .collect();
        for r in block_on(admin.create_topics(&topics, &opts)).map_err(|e| e.to_string())? {
            match r {
                Ok(_) => created += 1,
                Err((name, code)) => return Err(format!("create {name}: {code:?}")),
            }
        }
    }
    Ok(json!({
        "topics": created,
        "partitions_each": partitions,
        "elapsed_s": r3(started.elapsed().as_secs_f64()),
    }))
}

/// `metadata [--repeat N]`: times librdkafka's metadata call for all topics (one Metadata
/// request plus librdkafka's parsing of the answer, i.e. what a client waits for). The
/// first call also opens the connection, so it is reported apart and not in the figures.
pub fn metadata(args: &Args) -> Result<Value, String> {
    let repeat = args.u64_or("repeat", 20)?.max(1) as usize;
    let mut c = base_config(args)?;
    c.set("group.id", "strom-bench");
    let client: BaseConsumer<QuietContext> =
        BaseConsumer::from_config_and_context(&c, QuietContext::default())
            .map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(30);
    let time_one = || -> Result<(f64, usize, usize), String> {
        let t = Instant::now();
        let md = client
            .fetch_metadata(None, timeout)
            .map_err(|e| format!("metadata: {e}"))?;
        let elapsed = t.elapsed().as_secs_f64() * 1e3;
        let parts = md.topics().iter().map(|t| t.partitions().len()).sum();
        Ok((elapsed, md.topics().len(), parts))
    };
    let (first_ms, _, _) = time_one()?;
    let mut samples = Vec::with_capacity(repeat);
    let (mut topics, mut partitions) = (0, 0);
    for _ in 0..repeat {
        let (t, nt, np) = time_one()?;
        samples.push(t);
        (topics, partitions) = (nt, np);
    }
    samples.sort_by(f64::total_cmp);
    Ok(json!({
        "topics": topics,
        "partitions": partitions,
        "first_ms": r3(first_ms),
        "median_ms": r3(samples[samples.len() / 2]),
        "min_ms": r3(samples[0]),
        "max_ms": r3(samples[samples.len() - 1]),
        "samples": samples.len(),
    }))
}
