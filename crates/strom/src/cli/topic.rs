//! `strom topic create|list|describe|alter|delete|delete-records|lag`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strom_client::admin::RESOURCE_TOPIC;
use strom_client::{
    topic_id_string, Client, ConfigEntry, ConfigOp, KafkaCode, NewTopic, OffsetSpec, TopicMeta,
};

use super::output::{ids, print, print_json, Table};
use super::{parse_key_value, ClientOpts, OutputFormat};

#[derive(Args)]
pub struct TopicArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic (CreateTopics).
    Create {
        /// Topic name.
        topic: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(long, short = 'p', value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
        /// Replicas per partition (default: the broker's default.replication.factor).
        #[arg(long, short = 'r', value_name = "N", value_parser = clap::value_parser!(i16).range(1..))]
        replication_factor: Option<i16>,
        /// A topic config, e.g. --config retention.ms=86400000 (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed without doing anything if the topic exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics (Metadata).
    List {
        /// Leave out internal topics (e.g. __consumer_offsets).
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Describe topics: partitions, leaders, replicas, ISR, log start offset,
    /// high watermark, size on disk, configs.
    Describe {
        /// Topics to describe (default: all).
        topics: Vec<String>,
        /// Show every config with its source, not only the ones set on the topic.
        #[arg(long)]
        all_configs: bool,
    },
    /// Add partitions (CreatePartitions) and change configs (IncrementalAlterConfigs).
    #[command(arg_required_else_help = true)]
    Alter {
        /// Topic name.
        topic: String,
        /// The new (larger) partition count.
        #[arg(long, short = 'p', value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
        /// Set a topic config (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Remove a topic config, back to the broker's default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete the records before an offset (DeleteRecords): the log start
    /// offset moves up; prints each partition's new low watermark.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["partitions", "all_partitions", "offset_json_file"])))]
    DeleteRecords {
        /// Topic name (not with --offset-json-file).
        #[arg(
            required_unless_present = "offset_json_file",
            conflicts_with = "offset_json_file"
        )]
        topic: Option<String>,
        /// A partition (repeatable).
        #[arg(long = "partition", short = 'p', value_name = "P", value_parser = clap::value_parser!(i32).range(0..))]
        partitions: Vec<i32>,
        /// Every partition of the topic.
        #[arg(long = "all", conflicts_with = "partitions")]
        all_partitions: bool,
        /// Delete the records before this offset; `end` for all of them (up
        /// to the high watermark).
        #[arg(long, value_name = "OFFSET|end", value_parser = parse_before,
              required_unless_present = "offset_json_file", conflicts_with = "offset_json_file")]
        before: Option<i64>,
        /// kafka-delete-records.sh's file:
        /// {"partitions":[{"topic":"t","partition":0,"offset":10}],"version":1}
        /// (offset -1: up to the high watermark).
        #[arg(long, value_name = "FILE")]
        offset_json_file: Option<PathBuf>,
    },
    /// Consumer lag on a topic of every group with committed offsets on it.
    Lag {
        /// Topic name.
        topic: String,
    },
    /// Delete topics (DeleteTopics).
    Delete {
        /// Topics to delete.
        #[arg(required = true)]
        topics: Vec<String>,
        /// Succeed for topics that do not exist.
        #[arg(long)]
        if_exists: bool,
    },
}

pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    let opts = args.opts;
    let client = opts.connect().await?;
    match args.command {
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            create(
                &client,
                opts.output,
                topic,
                partitions,
                replication_factor,
                configs,
                if_not_exists,
            )
            .await
        }
        TopicCommand::List { exclude_internal } => {
            list(&client, opts.output, exclude_internal).await
        }
        TopicCommand::Describe {
            topics,
            all_configs,
        } => describe(&client, opts.output, topics, all_configs).await,
        TopicCommand::Alter {
            topic,
            partitions,
            configs,
            delete_configs,
        } => {
            alter(
                &client,
                opts.output,
                topic,
                partitions,
                configs,
                delete_configs,
            )
            .await
        }
        TopicCommand::DeleteRecords {
            topic,
            partitions,
            all_partitions,
            before,
            offset_json_file,
        } => {
            let plan = match (offset_json_file, topic, before) {
                (Some(path), _, _) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    parse_offset_json(&text)
                        .with_context(|| format!("bad offset JSON file {}", path.display()))?
                }
                (None, Some(topic), Some(before)) => {
                    let meta = known_topic(&client, &topic).await?;
                    let all: Vec<i32> = meta.partitions.iter().map(|p| p.partition).collect();
                    let chosen = if all_partitions {
                        all.clone()
                    } else {
                        partitions
                    };
                    let mut m = BTreeMap::new();
                    for p in chosen {
                        if !all.contains(&p) {
                            bail!("topic {topic} has no partition {p}");
                        }
                        m.insert(p, before);
                    }
                    BTreeMap::from([(topic, m)])
                }
                _ => bail!("give TOPIC and --before, or --offset-json-file"),
            };
            delete_records(&client, opts.output, plan).await
        }
        TopicCommand::Lag { topic } => lag(&client, opts.output, &topic).await,
        TopicCommand::Delete { topics, if_exists } => {
            delete(&client, opts.output, topics, if_exists).await
        }
    }
}

async fn create(
    client: &Client,
    output: OutputFormat,
    topic: String,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: Vec<(String, String)>,
    if_not_exists: bool,
) -> anyhow::Result<()> {
    let new = NewTopic {
        name: topic.clone(),
        partitions: partitions.unwrap_or(-1),
        replication_factor: replication_factor.unwrap_or(-1),
        configs,
    };
    let result = client
        .create_topics(std::slice::from_ref(&new), false)
        .await?
        .pop()
        .context("no answer from the broker")?;
    match result {
        Ok(created) => {
            // Before CreateTopics v5 the answer lacks the counts: ask.
            let (id, parts, rf) = if created.partitions < 0 || created.id.is_nil() {
                match client.topic_metadata(&topic, false).await {
                    Ok(m) => (
                        m.id,
                        m.partitions.len() as i32,
                        m.replication_factor() as i16,
                    ),
                    Err(_) => (created.id, created.partitions, created.replication_factor),
                }
            } else {
                (created.id, created.partitions, created.replication_factor)
            };
            match output {
                OutputFormat::Json => print_json(&json!({
                    "name": topic,
                    "created": true,
                    "topic_id": (!id.is_nil()).then(|| topic_id_string(&id)),
                    "partitions": parts,
                    "replication_factor": rf,
                })),
                OutputFormat::Table => print(&format!("Created topic {topic}.\n")),
            }
        }
        Err(e) if if_not_exists && e.code() == Some(KafkaCode::TOPIC_ALREADY_EXISTS) => {
            match output {
                OutputFormat::Json => print_json(&json!({"name": topic, "created": false})),
                OutputFormat::Table => print(&format!("Topic {topic} already exists.\n")),
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn topic_json(t: &TopicMeta) -> Value {
    json!({
        "name": t.name,
        "topic_id": (!t.id.is_nil()).then(|| topic_id_string(&t.id)),
        "internal": t.internal,
        "partitions": t.partitions.len(),
        "replication_factor": t.replication_factor(),
    })
}

async fn list(client: &Client, output: OutputFormat, exclude_internal: bool) -> anyhow::Result<()> {
    let md = client.metadata(None, false).await?;
    let topics: Vec<&TopicMeta> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0 && !(exclude_internal && t.internal))
        .collect();
    match output {
        OutputFormat::Json => print_json(&Value::Array(
            topics.iter().map(|t| topic_json(t)).collect(),
        )),
        OutputFormat::Table => {
            let mut table = Table::new(&["TOPIC", "PARTITIONS", "REPLICATION-FACTOR", "TOPIC-ID"]);
            for t in topics {
                table.row(vec![
                    if t.internal {
                        format!("{} (internal)", t.name)
                    } else {
                        t.name.clone()
                    },
                    t.partitions.len().to_string(),
                    t.replication_factor().to_string(),
                    if t.id.is_nil() {
                        "-".into()
                    } else {
                        topic_id_string(&t.id)
                    },
                ]);
            }
            print(&table.render())
        }
    }
}

fn unknown_topic(name: &str) -> anyhow::Error {
    anyhow::anyhow!("topic {name} does not exist (UNKNOWN_TOPIC_OR_PARTITION)")
}

async fn known_topic(client: &Client, topic: &str) -> anyhow::Result<TopicMeta> {
    match client.topic_metadata(topic, false).await {
        Ok(m) => Ok(m),
        Err(e) if e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
            Err(unknown_topic(topic))
        }
        Err(e) => Err(e.into()),
    }
}

/// `--before`: an offset, or `end` (DeleteRecords' -1: the high watermark).
fn parse_before(s: &str) -> Result<i64, String> {
    if s == "end" {
        return Ok(strom_client::DELETE_TO_HIGH_WATERMARK);
    }
    match s.parse::<i64>() {
        Ok(o) if o >= 0 => Ok(o),
        _ => Err(format!(
            "expected an offset (0 or more) or `end`, got {s:?}"
        )),
    }
}

/// kafka-delete-records.sh's offset file; a partition named twice is an
/// error, as there.
fn parse_offset_json(text: &str) -> anyhow::Result<BTreeMap<String, BTreeMap<i32, i64>>> {
    let file: Value = serde_json::from_str(text)?;
    let Some(entries) = file.get("partitions").and_then(Value::as_array) else {
        bail!("expected {{\"partitions\": [...], \"version\": 1}}");
    };
    if let Some(v) = file.get("version") {
        if v.as_i64() != Some(1) {
            bail!("unsupported version {v}");
        }
    }
    let mut out: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for e in entries {
        let topic = e.get("topic").and_then(Value::as_str);
        let partition = e
            .get("partition")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok());
        let offset = e.get("offset").and_then(Value::as_i64);
        let (Some(topic), Some(partition), Some(offset)) = (topic, partition, offset) else {
            bail!("each partition needs \"topic\", \"partition\" and \"offset\": {e}");
        };
        if topic.is_empty() || partition < 0 {
            bail!("bad partition {topic}[{partition}]");
        }
        if offset < strom_client::DELETE_TO_HIGH_WATERMARK {
            bail!("bad offset {offset} for {topic}[{partition}]");
        }
        if out
            .entry(topic.to_string())
            .or_default()
            .insert(partition, offset)
            .is_some()
        {
            bail!("partition {topic}[{partition}] is listed twice");
        }
    }
    if out.is_empty() {
        bail!("no partitions listed");
    }
    Ok(out)
}
async fn delete_records(
    client: &Client,
    output: OutputFormat,
    plan: BTreeMap<String, BTreeMap<i32, i64>>,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut first_error = None;
    for (topic, offsets) in &plan {
        let results = match client.delete_records(topic, offsets).await {
            Ok(r) => r,
            Err(e) if e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                return Err(unknown_topic(topic))
            }
            Err(e) => return Err(e.into()),
        };
        for (p, r) in results {
            match r {
                Ok(low) => rows.push((topic.clone(), p, Some(low), None)),
                Err(e) => {
                    let line = format!("{e}");
                    rows.push((topic.clone(), p, None, Some(line.clone())));
                    first_error.get_or_insert(anyhow::anyhow!(line));
                }
            }
        }
    }
    match output {
        OutputFormat::Json => print_json(&Value::Array(
            rows.iter()
                .map(|(t, p, low, e)| {
                    json!({"topic": t, "partition": p, "low_watermark": low, "error": e})
                })
                .collect(),
        ))?,
        OutputFormat::Table => {
            let mut table = Table::new(&["TOPIC", "PARTITION", "LOW-WATERMARK", "ERROR"]);
            for (t, p, low, e) in &rows {
                table.row(vec![
                    t.clone(),
                    p.to_string(),
                    low.map_or("-".into(), |l| l.to_string()),
                    e.clone().unwrap_or_default(),
                ]);
            }
            print(&table.render())?;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Log start offset, high watermark and size of each partition of `t`;
/// what cannot be learnt is `None` (an old broker, a partition without a
/// leader) rather than an error, so `describe` still shows the rest.
struct PartitionOffsets {
    log_start: Option<i64>,
    high_watermark: Option<i64>,
    size_bytes: Option<i64>,
}

async fn partition_offsets(
    client: &Client,
    metas: &[TopicMeta],
) -> BTreeMap<(String, i32), PartitionOffsets> {
    let mut out = BTreeMap::new();
    let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for t in metas {
        // A partition without a leader has no offsets to give; asking would
        // wait for one until the request timeout.
        let ps: Vec<i32> = t
            .partitions
            .iter()
            .filter(|p| p.leader >= 0)
            .map(|p| p.partition)
            .collect();
        let lo = client
            .list_offsets(&t.name, &ps, OffsetSpec::Earliest)
            .await;
        let hi = client.list_offsets(&t.name, &ps, OffsetSpec::Latest).await;
        let get =
            |m: &Result<BTreeMap<i32, strom_client::Result<strom_client::ListedOffset>>, _>,
             p: i32| {
                m.as_ref()
                    .ok()
                    .and_then(|m| m.get(&p))
                    .and_then(|r| r.as_ref().ok())
                    .map(|o| o.offset)
            };
        for p in &ps {
            out.insert(
                (t.name.clone(), *p),
                PartitionOffsets {
                    log_start: get(&lo, *p),
                    high_watermark: get(&hi, *p),
                    size_bytes: None,
                },
            );
        }
        wanted.insert(t.name.clone(), ps);
    }
    let leaders: BTreeMap<(String, i32), i32> = metas
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| ((t.name.clone(), p.partition), p.leader))
        })
        .collect();
    // Sizes are the leader replica's (the one that answers reads); a broker
    // without DescribeLogDirs leaves them unknown.
    if let Ok(brokers) = client.describe_log_dirs(Some(&wanted)).await {
        for (broker, dirs) in brokers {
            let Ok(dirs) = dirs else { continue };
            for d in dirs.iter().filter(|d| d.error_code == 0) {
                for p in d.partitions.iter().filter(|p| !p.is_future) {
                    let key = (p.topic.clone(), p.partition);
                    if leaders.get(&key) != Some(&broker) {
                        continue;
                    }
                    if let Some(o) = out.get_mut(&key) {
                        *o.size_bytes.get_or_insert(0) += p.size_bytes.max(0);
                    }
                }
            }
        }
    }
    out
}

async fn lag(client: &Client, output: OutputFormat, topic: &str) -> anyhow::Result<()> {
    let meta = known_topic(client, topic).await?;
    let ps: Vec<i32> = meta.partitions.iter().map(|p| p.partition).collect();
    let ends = client.list_offsets(topic, &ps, OffsetSpec::Latest).await?;
    let mut end_of = BTreeMap::new();
    for (p, r) in ends {
        let o = r.with_context(|| format!("the end offset of {topic}[{p}]"))?;
        end_of.insert(p, o.offset);
    }
    struct GroupLag {
        group: String,
        state: String,
        rows: Vec<(i32, i64, i64, i64)>,
    }
    let wanted = [(topic.to_string(), ps.clone())];
    let mut groups = Vec::new();
    for g in client.list_groups().await? {
        // Groups of other protocols (connect, ...) commit no offsets.
        if !(g.protocol_type.is_empty() || g.protocol_type == "consumer") {
            continue;
        }
        let committed = match client.fetch_committed(&g.group_id, Some(&wanted)).await {
            Ok(c) => c,
            // Deleted since it was listed.
            Err(e) if e.code() == Some(KafkaCode::GROUP_ID_NOT_FOUND) => continue,
            Err(e) => return Err(anyhow::Error::from(e).context(format!("group {}", g.group_id))),
        };
        let mut rows = Vec::new();
        for (p, c) in committed.get(topic).into_iter().flatten() {
            if *c < 0 {
                continue;
            }
            let Some(end) = end_of.get(p).copied() else {
                continue;
            };
            rows.push((*p, *c, end, (end - c).max(0)));
        }
        if !rows.is_empty() {
            groups.push(GroupLag {
                group: g.group_id,
                state: g.state,
                rows,
            });
        }
    }
    let total = |g: &GroupLag| g.rows.iter().map(|r| r.3).sum::<i64>();
    let max = |g: &GroupLag| g.rows.iter().map(|r| r.3).max().unwrap_or(0);
    match output {
        OutputFormat::Json => print_json(&json!({
            "topic": topic,
            "groups": groups.iter().map(|g| json!({
                "group": g.group,
                "state": (!g.state.is_empty()).then_some(&g.state),
                "total_lag": total(g),
                "max_lag": max(g),
                "partitions": g.rows.iter().map(|(p, c, e, l)| json!({
                    "partition": p, "current_offset": c, "log_end_offset": e, "lag": l,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            if groups.is_empty() {
                return print(&format!("No group has committed offsets on {topic}.\n"));
            }
            let mut summary = Table::new(&["GROUP", "STATE", "PARTITIONS", "TOTAL-LAG", "MAX-LAG"]);
            let mut detail = Table::new(&[
                "GROUP",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
            ]);
            for g in &groups {
                summary.row(vec![
                    g.group.clone(),
                    if g.state.is_empty() {
                        "-".into()
                    } else {
                        g.state.clone()
                    },
                    g.rows.len().to_string(),
                    total(g).to_string(),
                    max(g).to_string(),
                ]);
                for (p, c, e, l) in &g.rows {
                    detail.row(vec![
                        g.group.clone(),
                        p.to_string(),
                        c.to_string(),
                        e.to_string(),
                        l.to_string(),
                    ]);
                }
            }
            print(&format!("{}\n{}", summary.render(), detail.render()))
        }
    }
}

fn config_json(c: &ConfigEntry) -> Value {
    json!({
        "name": c.name,
        "value": if c.sensitive { None } else { c.value.clone() },
        "source": c.source_name(),
        "read_only": c.read_only,
        "sensitive": c.sensitive,
    })
}

async fn describe(
    client: &Client,
    output: OutputFormat,
    topics: Vec<String>,
    all_configs: bool,
) -> anyhow::Result<()> {
    let md = if topics.is_empty() {
        client.metadata(None, false).await?
    } else {
        client.metadata(Some(&topics), false).await?
    };
    let metas: Vec<TopicMeta> = if topics.is_empty() {
        md.topics
            .iter()
            .filter(|t| !t.internal && t.error_code == 0)
            .cloned()
            .collect()
    } else {
        let mut out = Vec::new();
        for name in &topics {
            match md.topic(name) {
                Some(t) if t.error_code == 0 => out.push(t.clone()),
                Some(t) if t.error_code == KafkaCode::UNKNOWN_TOPIC_OR_PARTITION => {
                    return Err(unknown_topic(name))
                }
                Some(t) => bail!("topic {name}: {}", KafkaCode(t.error_code)),
                None => return Err(unknown_topic(name)),
            }
        }
        out
    };
    let names: Vec<String> = metas.iter().map(|t| t.name.clone()).collect();
    let offsets = partition_offsets(client, &metas).await;
    let configs = if names.is_empty() {
        Vec::new()
    } else {
        client.describe_configs(RESOURCE_TOPIC, &names).await?
    };
    let mut json_out = Vec::new();
    let mut text = String::new();
    for (i, t) in metas.iter().enumerate() {
        let entries: Vec<ConfigEntry> = match configs.get(i) {
            Some(Ok(c)) => c
                .iter()
                .filter(|c| all_configs || c.is_override())
                .cloned()
                .collect(),
            Some(Err(e)) => return Err(e.clone().into()),
            None => Vec::new(),
        };
        match output {
            OutputFormat::Json => {
                let mut v = topic_json(t);
                v["partitions"] = Value::Array(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let o = offsets.get(&(t.name.clone(), p.partition));
                            json!({
                                "partition": p.partition,
                                "log_start_offset": o.and_then(|o| o.log_start),
                                "high_watermark": o.and_then(|o| o.high_watermark),
                                "size_bytes": o.and_then(|o| o.size_bytes),
                                "leader": p.leader,
                                "leader_epoch": p.leader_epoch,
                                "replicas": p.replicas,
                                "isr": p.isr,
                                "offline_replicas": p.offline,
                                "error": (p.error_code != 0).then(|| KafkaCode(p.error_code).name()),
                            })
                        })
                        .collect(),
                );
                v["partition_count"] = json!(t.partitions.len());
                v["configs"] = Value::Array(entries.iter().map(config_json).collect());
                json_out.push(v);
            }
            OutputFormat::Table => {
                if i > 0 {
                    text.push('\n');
                }
                let set: Vec<String> = entries
                    .iter()
                    .filter(|c| c.is_override())
                    .map(|c| {
                        let v = if c.sensitive {
                            "[hidden]".to_string()
                        } else {
                            c.value.clone().unwrap_or_default()
                        };
                        format!("{}={v}", c.name)
                    })
                    .collect();
                text.push_str(&format!(
                    "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
                    t.name,
                    if t.id.is_nil() { "-".into() } else { topic_id_string(&t.id) },
                    t.partitions.len(),
                    t.replication_factor(),
                    set.join(",")
                ));
                let mut table = Table::new(&[
                    "PARTITION",
                    "LEADER",
                    "REPLICAS",
                    "ISR",
                    "LOG-START-OFFSET",
                    "HIGH-WATERMARK",
                    "SIZE",
                    "OFFLINE",
                ]);
                let dash = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
                for p in &t.partitions {
                    let o = offsets.get(&(t.name.clone(), p.partition));
                    table.row(vec![
                        p.partition.to_string(),
                        if p.leader < 0 {
                            "none".into()
                        } else {
                            p.leader.to_string()
                        },
                        ids(&p.replicas),
                        ids(&p.isr),
                        dash(o.and_then(|o| o.log_start)),
                        dash(o.and_then(|o| o.high_watermark)),
                        dash(o.and_then(|o| o.size_bytes)),
                        if p.offline.is_empty() {
                            String::new()
                        } else {
                            ids(&p.offline)
                        },
                    ]);
                }
                text.push_str(&table.render());
                if all_configs {
                    let mut table = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
                    for c in &entries {
                        table.row(vec![
                            c.name.clone(),
                            if c.sensitive {
                                "[hidden]".into()
                            } else {
                                c.value.clone().unwrap_or_else(|| "null".into())
                            },
                            c.source_name().to_string(),
                        ]);
                    }
                    text.push('\n');
                    text.push_str(&table.render());
                }
            }
        }
    }
    match output {
        OutputFormat::Json => print_json(&Value::Array(json_out)),
        OutputFormat::Table => print(&text),
    }
}

async fn alter(
    client: &Client,
    output: OutputFormat,
    topic: String,
    partitions: Option<i32>,
    configs: Vec<(String, String)>,
    delete_configs: Vec<String>,
) -> anyhow::Result<()> {
    if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
        bail!("nothing to alter: give --partitions, --config or --delete-config");
    }
    let meta = match client.topic_metadata(&topic, false).await {
        Ok(m) => m,
        Err(e) if e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
            return Err(unknown_topic(&topic))
        }
        Err(e) => return Err(e.into()),
    };
    let mut done = Vec::new();
    if let Some(n) = partitions {
        let before = meta.partitions.len();
        client.create_partitions(&topic, n).await?;
        done.push(format!("partitions {before} -> {n}"));
    }
    let mut ops: Vec<ConfigOp> = configs
        .iter()
        .map(|(k, v)| ConfigOp::Set(k.clone(), v.clone()))
        .collect();
    ops.extend(delete_configs.iter().map(|k| ConfigOp::Delete(k.clone())));
    if !ops.is_empty() {
        client
            .incremental_alter_configs(RESOURCE_TOPIC, &topic, &ops)
            .await?;
        for (k, v) in &configs {
            done.push(format!("set {k}={v}"));
        }
        for k in &delete_configs {
            done.push(format!("deleted {k}"));
        }
    }
    match output {
        OutputFormat::Json => print_json(&json!({
            "name": topic,
            "partitions": partitions,
            "set_configs": configs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "deleted_configs": delete_configs,
        })),
        OutputFormat::Table => print(&format!("Altered topic {topic}: {}.\n", done.join("; "))),
    }
}

async fn delete(
    client: &Client,
    output: OutputFormat,
    topics: Vec<String>,
    if_exists: bool,
) -> anyhow::Result<()> {
    let results = client.delete_topics(&topics).await?;
    let mut json_out = Vec::new();
    let mut text = String::new();
    let mut first_error = None;
    for (name, r) in topics.iter().zip(results) {
        match r {
            Ok(()) => {
                json_out.push(json!({"name": name, "deleted": true}));
                text.push_str(&format!("Deleted topic {name}.\n"));
            }
            Err(e) if if_exists && e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                json_out.push(json!({"name": name, "deleted": false}));
                text.push_str(&format!("Topic {name} does not exist.\n"));
            }
            Err(e) => {
                let e: anyhow::Error = if e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) {
                    unknown_topic(name)
                } else {
                    e.into()
                };
                json_out.push(json!({"name": name, "deleted": false, "error": format!("{e:#}")}));
                first_error.get_or_insert(e);
            }
        }
    }
    match output {
        OutputFormat::Json => print_json(&Value::Array(json_out))?,
        OutputFormat::Table => print(&text)?,
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_is_an_offset_or_end() {
        assert_eq!(parse_before("0"), Ok(0));
        assert_eq!(parse_before("1234"), Ok(1234));
        assert_eq!(parse_before("end"), Ok(-1));
        assert!(parse_before("-1").is_err());
        assert!(parse_before("x").is_err());
    }

    #[test]
    fn offset_files_as_kafka_delete_records_reads_them() {
        let m = parse_offset_json(
            r#"{"partitions":[{"topic":"a","partition":0,"offset":10},
                {"topic":"a","partition":2,"offset":-1},{"topic":"b","partition":1,"offset":0}],
                "version":1}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            BTreeMap::from([
                ("a".to_string(), BTreeMap::from([(0, 10), (2, -1)])),
                ("b".to_string(), BTreeMap::from([(1, 0)])),
            ])
        );
        for bad in [
            "",
            "[]",
            r#"{"partitions":[]}"#,
            r#"{"partitions":[{"topic":"a","partition":0}]}"#,
            r#"{"partitions":[{"topic":"a","partition":-1,"offset":1}]}"#,
            r#"{"partitions":[{"topic":"a","partition":0,"offset":-2}]}"#,
            r#"{"partitions":[{"topic":"a","partition":4294967296,"offset":1}]}"#,
            r#"{"partitions":[{"topic":"","partition":0,"offset":1}]}"#,
            r#"{"partitions":[{"topic":"a","partition":0,"offset":1},{"topic":"a","partition":0,"offset":2}]}"#,
            r#"{"partitions":[{"topic":"a","partition":0,"offset":1}],"version":2}"#,
        ] {
            assert!(parse_offset_json(bad).is_err(), "{bad}");
        }
    }
}
