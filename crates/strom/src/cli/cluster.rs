//! `strom cluster describe|config get|config set`.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strom_client::admin::{
    config_source_name, RESOURCE_BROKER, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT_BROKER,
};
use strom_client::{Client, ConfigEntry, ConfigOp, ConfigQuery};

use super::output::{print, print_json, Table};
use super::{parse_key_value, ClientOpts, OutputFormat};

#[derive(Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Cluster id, controller, brokers, and how many partitions each leads
    /// (DescribeCluster + Metadata).
    Describe,
    /// Broker configs: get (DescribeConfigs) and set (IncrementalAlterConfigs).
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Show broker configs with their value, source, read-only and
    /// sensitive flags (as `kafka-configs.sh --describe --all`).
    Get {
        /// Configs to show (default: all).
        #[arg(value_name = "KEY")]
        keys: Vec<String>,
        /// The broker to describe (default: the controller).
        #[arg(long, value_name = "ID", allow_negative_numbers = true,
              value_parser = clap::value_parser!(i32).range(0..))]
        broker: Option<i32>,
        /// Only the cluster-wide dynamic defaults (Kafka's --entity-default).
        #[arg(long, conflicts_with = "broker")]
        default: bool,
        /// Only the dynamic configs, set with `config set` (what
        /// `kafka-configs.sh --describe` shows without --all).
        #[arg(long)]
        dynamic: bool,
    },
    /// Change broker configs: for every broker (the cluster-wide default,
    /// Kafka's --entity-default) or, with --broker, for one.
    #[command(arg_required_else_help = true)]
    Set {
        /// Configs to set.
        #[arg(value_name = "KEY=VALUE", value_parser = parse_key_value,
              required_unless_present = "delete")]
        configs: Vec<(String, String)>,
        /// Only on this broker (default: every broker).
        #[arg(long, value_name = "ID", allow_negative_numbers = true,
              value_parser = clap::value_parser!(i32).range(0..))]
        broker: Option<i32>,
        /// Remove a dynamic config, back to the layer below (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let client = args.opts.connect().await?;
    match args.command {
        ClusterCommand::Describe => describe(&client, args.opts.output).await,
        ClusterCommand::Config(ConfigCommand::Get {
            keys,
            broker,
            default,
            dynamic,
        }) => config_get(&client, args.opts.output, keys, broker, default, dynamic).await,
        ClusterCommand::Config(ConfigCommand::Set {
            configs,
            broker,
            delete,
        }) => config_set(&client, args.opts.output, configs, broker, delete).await,
    }
}

async fn describe(client: &Client, output: OutputFormat) -> anyhow::Result<()> {
    let info = client.describe_cluster().await?;
    let md = client.metadata(None, false).await?;
    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
    let mut partitions = 0;
    for t in md.topics.iter().filter(|t| t.error_code == 0) {
        for p in &t.partitions {
            partitions += 1;
            *leaders.entry(p.leader).or_default() += 1;
        }
    }
    let topics = md.topics.iter().filter(|t| t.error_code == 0).count();
    let cluster_id = info.cluster_id.clone().or(md.cluster_id.clone());
    match output {
        OutputFormat::Json => print_json(&json!({
            "cluster_id": cluster_id,
            "controller_id": info.controller_id,
            "brokers": info.brokers.iter().map(|b| json!({
                "id": b.node_id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "leader_partitions": leaders.get(&b.node_id).copied().unwrap_or(0),
            })).collect::<Vec<_>>(),
            "topics": topics,
            "partitions": partitions,
        })),
        OutputFormat::Table => {
            let mut text = format!(
                "Cluster ID:  {}\nController:  {}\nBrokers:     {}\nTopics:      {topics} ({partitions} partitions)\n\n",
                cluster_id.as_deref().unwrap_or("-"),
                if info.controller_id < 0 { "none".to_string() } else { info.controller_id.to_string() },
                info.brokers.len(),
            );
            let mut table = Table::new(&["BROKER", "HOST", "PORT", "RACK", "LEADER-PARTITIONS"]);
            for b in &info.brokers {
                table.row(vec![
                    format!(
                        "{}{}",
                        b.node_id,
                        if b.node_id == info.controller_id {
                            " (controller)"
                        } else {
                            ""
                        }
                    ),
                    b.host.clone(),
                    b.port.to_string(),
                    b.rack.clone().unwrap_or_else(|| "-".into()),
                    leaders.get(&b.node_id).copied().unwrap_or(0).to_string(),
                ]);
            }
            text.push_str(&table.render());
            print(&text)
        }
    }
}

/// The broker whose configs `config get` shows when none is named.
async fn default_broker(client: &Client) -> anyhow::Result<i32> {
    let info = client.describe_cluster().await?;
    if info.controller_id >= 0 && info.brokers.iter().any(|b| b.node_id == info.controller_id) {
        return Ok(info.controller_id);
    }
    match info.brokers.iter().map(|b| b.node_id).min() {
        Some(id) => Ok(id),
        None => bail!("the cluster has no brokers"),
    }
}

/// The cluster-wide default layer of an entry: Kafka answers the empty
/// resource name with just those entries; a broker that answers with its
/// values in force still names that layer among the synonyms.
fn default_layer(entry: &ConfigEntry) -> Option<ConfigEntry> {
    if entry.source == SOURCE_DYNAMIC_DEFAULT_BROKER {
        return Some(entry.clone());
    }
    let s = entry
        .synonyms
        .iter()
        .find(|s| s.source == SOURCE_DYNAMIC_DEFAULT_BROKER)?;
    Some(ConfigEntry {
        value: s.value.clone(),
        source: s.source,
        synonyms: Vec::new(),
        ..entry.clone()
    })
}

/// DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG,
/// DYNAMIC_BROKER_LOGGER_CONFIG: the layers `config set` writes.
fn is_dynamic_source(source: i8) -> bool {
    matches!(
        source,
        SOURCE_DYNAMIC_BROKER | SOURCE_DYNAMIC_DEFAULT_BROKER | 6
    )
}

fn shown_value(c: &ConfigEntry) -> Option<String> {
    if c.sensitive {
        None
    } else {
        c.value.clone()
    }
}

async fn config_get(
    client: &Client,
    output: OutputFormat,
    keys: Vec<String>,
    broker: Option<i32>,
    default: bool,
    dynamic: bool,
) -> anyhow::Result<()> {
    let resource = if default {
        String::new()
    } else {
        match broker {
            Some(id) => id.to_string(),
            None => default_broker(client).await?.to_string(),
        }
    };
    let query = ConfigQuery {
        keys: (!keys.is_empty()).then(|| keys.clone()),
        include_synonyms: true,
        include_documentation: false,
    };
    let mut entries = client
        .describe_resource_configs(RESOURCE_BROKER, &resource, &query)
        .await?;
    if !keys.is_empty() {
        entries.retain(|e| keys.contains(&e.name));
    }
    if default {
        entries = entries.iter().filter_map(default_layer).collect();
    } else if let Some(missing) = keys.iter().find(|k| !entries.iter().any(|e| &e.name == *k)) {
        bail!("broker {resource} has no config {missing}");
    }
    if dynamic {
        entries.retain(|e| is_dynamic_source(e.source));
    }
    match output {
        OutputFormat::Json => print_json(&json!({
            "broker": (!default).then(|| resource.parse::<i32>().ok()).flatten(),
            "default": default,
            "configs": entries.iter().map(|c| json!({
                "name": c.name,
                "value": shown_value(c),
                "source": c.source_name(),
                "read_only": c.read_only,
                "sensitive": c.sensitive,
                "synonyms": c.synonyms.iter().map(|s| json!({
                    "name": s.name,
                    "value": if c.sensitive { None } else { s.value.clone() },
                    "source": config_source_name(s.source),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            let mut text = if default {
                "Cluster-wide default configs (dynamic):\n".to_string()
            } else {
                format!("Configs of broker {resource}:\n")
            };
            if entries.is_empty() {
                text.push_str("(none)\n");
            } else {
                let mut table =
                    Table::new(&["CONFIG", "VALUE", "SOURCE", "READ-ONLY", "SENSITIVE"]);
                for c in &entries {
                    table.row(vec![
                        c.name.clone(),
                        if c.sensitive {
                            "[hidden]".into()
                        } else {
                            c.value.clone().unwrap_or_else(|| "null".into())
                        },
                        c.source_name().to_string(),
                        c.read_only.to_string(),
                        c.sensitive.to_string(),
                    ]);
                }
                text.push_str(&table.render());
            }
            print(&text)
        }
    }
}

async fn config_set(
    client: &Client,
    output: OutputFormat,
    configs: Vec<(String, String)>,
    broker: Option<i32>,
    delete: Vec<String>,
) -> anyhow::Result<()> {
    if let Some(k) = delete.iter().find(|k| configs.iter().any(|(c, _)| c == *k)) {
        bail!("config {k} is both set and deleted");
    }
    let resource = broker.map(|b| b.to_string()).unwrap_or_default();
    let mut ops: Vec<ConfigOp> = configs
        .iter()
        .map(|(k, v)| ConfigOp::Set(k.clone(), v.clone()))
        .collect();
    ops.extend(delete.iter().map(|k| ConfigOp::Delete(k.clone())));
    client
        .incremental_alter_configs(RESOURCE_BROKER, &resource, &ops)
        .await?;
    let target = match broker {
        Some(b) => format!("broker {b}"),
        None => "every broker (cluster-wide default)".to_string(),
    };
    match output {
        OutputFormat::Json => print_json(&json!({
            "broker": broker,
            "default": broker.is_none(),
            "source": config_source_name(if broker.is_some() { SOURCE_DYNAMIC_BROKER } else { SOURCE_DYNAMIC_DEFAULT_BROKER }),
            "set_configs": configs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "deleted_configs": delete,
        })),
        OutputFormat::Table => {
            let mut done: Vec<String> = configs
                .iter()
                .map(|(k, v)| format!("set {k}={v}"))
                .collect();
            done.extend(delete.iter().map(|k| format!("deleted {k}")));
            print(&format!(
                "Altered configs of {target}: {}.\n",
                done.join("; ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_client::ConfigSynonym;

    fn entry(value: &str, source: i8, synonyms: Vec<ConfigSynonym>) -> ConfigEntry {
        ConfigEntry {
            name: "log.retention.ms".into(),
            value: Some(value.into()),
            source,
            read_only: false,
            sensitive: false,
            synonyms,
            documentation: None,
        }
    }

    fn synonym(value: &str, source: i8) -> ConfigSynonym {
        ConfigSynonym {
            name: "log.retention.ms".into(),
            value: Some(value.into()),
            source,
        }
    }

    #[test]
    fn the_default_layer_is_found_under_a_broker_value() {
        // Kafka's answer for the empty name: the default entries themselves.
        let own = entry("5", SOURCE_DYNAMIC_DEFAULT_BROKER, vec![]);
        assert_eq!(default_layer(&own).and_then(|e| e.value), Some("5".into()));
        // A broker's value over the default: the synonym gives the default.
        let over = entry(
            "7",
            SOURCE_DYNAMIC_BROKER,
            vec![
                synonym("7", SOURCE_DYNAMIC_BROKER),
                synonym("5", SOURCE_DYNAMIC_DEFAULT_BROKER),
                synonym("1", 4),
            ],
        );
        let d = default_layer(&over).unwrap();
        assert_eq!(
            (d.value.as_deref(), d.source),
            (Some("5"), SOURCE_DYNAMIC_DEFAULT_BROKER)
        );
        // No default layer at all.
        assert!(default_layer(&entry("1", 5, vec![synonym("1", 4)])).is_none());
    }
}
