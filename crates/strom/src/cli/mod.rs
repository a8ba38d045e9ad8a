//! The client commands of `strom`: they speak the Kafka protocol (through
//! `strom-client`) to any Kafka-compatible broker.

pub mod cluster;
pub mod consume;
pub mod format;
pub mod gateway;
pub mod group;
pub mod output;
pub mod produce;
pub mod security;
pub mod storage;
pub mod time;
pub mod topic;
pub mod transactions;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use strom_client::{Client, ClientConfig, ConnectionConfig};

pub use output::OutputFormat;

/// The client subcommands, flattened into `strom`'s command list.
#[derive(Subcommand)]
pub enum Command {
    /// Create, list, describe, alter and delete topics.
    Topic(topic::TopicArgs),
    /// Describe the cluster (id, controller, brokers); get and set broker configs.
    Cluster(cluster::ClusterArgs),
    /// List, describe, reset the offsets of, and delete consumer groups.
    Group(group::GroupArgs),
    /// Produce records: one per line of stdin (or --file).
    Produce(produce::ProduceArgs),
    /// Consume records and print them (kcat-like format strings).
    Consume(consume::ConsumeArgs),
    /// Check and repair a data directory offline: verify, recover-metadata.
    Storage(storage::StorageArgs),
    /// Serve topics over HTTP (Confluent REST Proxy v2) in front of a Kafka cluster.
    Gateway(gateway::GatewayArgs),
    /// List and describe transactional ids (kafka-transactions.sh list / describe).
    Transactions(transactions::TransactionsArgs),
    /// Create, list and delete ACLs (kafka-acls.sh).
    Acl(security::AclArgs),
    /// Create, list and delete users' SCRAM credentials (KIP-554).
    User(security::UserArgs),
}

/// Options shared by every client command.
#[derive(Args, Clone, Debug)]
pub struct ClientOpts {
    /// Bootstrap broker(s), HOST:PORT[,HOST:PORT...].
    #[arg(
        short = 'b',
        long = "bootstrap",
        env = "STROM_BOOTSTRAP",
        default_value = "localhost:9092",
        value_name = "HOST:PORT",
        global = true
    )]
    pub bootstrap: String,
    /// Output: table (for people) or json (for scripts; JSON Lines for consume).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    /// Time allowed for each request to a broker, in milliseconds.
    #[arg(long, default_value_t = 30_000, value_name = "MS", global = true,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub request_timeout_ms: u64,
    /// Kafka client properties (security.protocol, ssl.*, sasl.mechanism, sasl.jaas.config;
    /// for OAUTHBEARER Strom's sasl.oauthbearer.token or sasl.oauthbearer.token.file) for a
    /// TLS or SASL listener, as Kafka's tools take them.
    #[arg(long, value_name = "FILE", global = true)]
    pub command_config: Option<std::path::PathBuf>,
}

impl ClientOpts {
    pub fn client_config(&self) -> ClientConfig {
        let request_timeout = Duration::from_millis(self.request_timeout_ms);
        ClientConfig {
            connection: ConnectionConfig {
                client_id: "strom-cli".to_string(),
                request_timeout,
                connect_timeout: request_timeout.min(Duration::from_secs(10)),
                max_response_bytes: 128 * 1024 * 1024,
                security: None,
            },
        }
    }

    /// The security `--command-config` names, if any.
    fn security(&self) -> anyhow::Result<Option<Arc<strom_client::ClientSecurity>>> {
        let Some(path) = &self.command_config else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read --command-config {}: {e}", path.display()))?;
        let props = strom_security::client_config::parse_properties(&text);
        let security = strom_client::ClientSecurity::from_properties(&props)
            .map_err(|e| anyhow::anyhow!("--command-config {}: {e}", path.display()))?;
        Ok(security.map(Arc::new))
    }

    pub async fn connect(&self) -> anyhow::Result<Arc<Client>> {
        let mut config = self.client_config();
        config.connection.security = self.security()?;
        Ok(Arc::new(Client::connect(&self.bootstrap, config).await?))
    }
}

/// Runs a client command: its own runtime, errors as one line on stderr.
pub fn run(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strom-cli")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Topic(a) => topic::run(a).await,
            Command::Cluster(a) => cluster::run(a).await,
            Command::Group(a) => group::run(a).await,
            Command::Produce(a) => produce::run(a).await,
            Command::Consume(a) => consume::run(a).await,
            Command::Storage(a) => storage::run(a).await,
            Command::Gateway(a) => gateway::run(a).await,
            Command::Transactions(a) => transactions::run(a).await,
            Command::Acl(a) => security::run_acl(a).await,
            Command::User(a) => security::run_user(a).await,
        }
    });
    // Don't wait for tasks still blocked on stdin or sockets.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if output::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("strom: {line}");
            ExitCode::FAILURE
        }
    }
}

/// `KEY=VALUE` (for --config / --header).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
