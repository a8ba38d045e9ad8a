//! `strom cluster describe`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{print, print_json, Table};
use super::{ClientOpts, OutputFormat};

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
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let ClusterCommand::Describe = args.command;
    let client = args.opts.connect().await?;
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
    match args.opts.output {
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
