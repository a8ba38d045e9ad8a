//! `strom transactions list|describe` (kafka-transactions.sh's list and describe).

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strom_client::Client;

use super::output::{print, print_json, Table};
use super::{ClientOpts, OutputFormat};

#[derive(Args)]
pub struct TransactionsArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: TransactionsCommand,
}

#[derive(Subcommand)]
pub enum TransactionsCommand {
    /// List transactional ids (ListTransactions on every broker).
    List {
        /// Only ids in these states (Ongoing, PrepareCommit, CompleteAbort, ...; repeatable).
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
    },
    /// One transactional id: state, producer id and epoch, timeout, open partitions.
    Describe {
        /// Transactional id.
        #[arg(long = "transactional-id")]
        transactional_id: String,
    },
}

pub async fn run(args: TransactionsArgs) -> anyhow::Result<()> {
    let client = args.opts.connect().await?;
    match args.command {
        TransactionsCommand::List { states } => list(&client, args.opts.output, &states).await,
        TransactionsCommand::Describe { transactional_id } => {
            describe(&client, args.opts.output, &transactional_id).await
        }
    }
}

async fn list(client: &Client, output: OutputFormat, states: &[String]) -> anyhow::Result<()> {
    let listed = client.list_transactions(states).await?;
    match output {
        OutputFormat::Json => print_json(&Value::Array(
            listed
                .iter()
                .map(|t| {
                    json!({
                        "transactional_id": t.transactional_id,
                        "producer_id": t.producer_id,
                        "state": t.state,
                        "coordinator": t.coordinator,
                    })
                })
                .collect(),
        )),
        OutputFormat::Table => {
            let mut t = Table::new(&["TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE"]);
            for l in &listed {
                t.row(vec![
                    l.transactional_id.clone(),
                    l.coordinator.to_string(),
                    l.producer_id.to_string(),
                    l.state.clone(),
                ]);
            }
            print(&t.render())
        }
    }
}

async fn describe(client: &Client, output: OutputFormat, id: &str) -> anyhow::Result<()> {
    let d = client.describe_transaction(id).await?;
    let partitions: Vec<String> = d
        .partitions
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| format!("{t}-{p}")))
        .collect();
    match output {
        OutputFormat::Json => print_json(&json!({
            "transactional_id": d.transactional_id,
            "coordinator": d.coordinator,
            "state": d.state,
            "producer_id": d.producer_id,
            "producer_epoch": d.producer_epoch,
            "transaction_timeout_ms": d.timeout_ms,
            "transaction_start_time_ms": (d.start_time_ms >= 0).then_some(d.start_time_ms),
            "partitions": partitions,
        })),
        OutputFormat::Table => {
            let mut t = Table::new(&[
                "COORDINATOR",
                "TRANSACTIONAL-ID",
                "PRODUCER-ID",
                "PRODUCER-EPOCH",
                "STATE",
                "TIMEOUT-MS",
                "START-TIME-MS",
                "PARTITIONS",
            ]);
            t.row(vec![
                d.coordinator.to_string(),
                d.transactional_id.clone(),
                d.producer_id.to_string(),
                d.producer_epoch.to_string(),
                d.state.clone(),
                d.timeout_ms.to_string(),
                if d.start_time_ms >= 0 {
                    d.start_time_ms.to_string()
                } else {
                    "-".into()
                },
                if partitions.is_empty() {
                    "-".into()
                } else {
                    partitions.join(",")
                },
            ]);
            print(&t.render())
        }
    }
}
