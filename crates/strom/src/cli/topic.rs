//! `strom topic create|list|describe|alter|delete`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strom_client::admin::RESOURCE_TOPIC;
use strom_client::{
    topic_id_string, Client, ConfigEntry, ConfigOp, KafkaCode, NewTopic, TopicMeta,
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
    /// Describe topics: partitions, leaders, replicas, ISR, configs.
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
                            json!({
                                "partition": p.partition,
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
                let mut table = Table::new(&["PARTITION", "LEADER", "REPLICAS", "ISR", "OFFLINE"]);
                for p in &t.partitions {
                    table.row(vec![
                        p.partition.to_string(),
                        if p.leader < 0 {
                            "none".into()
                        } else {
                            p.leader.to_string()
                        },
                        ids(&p.replicas),
                        ids(&p.isr),
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
