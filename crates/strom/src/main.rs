//! `strom`: the Strom broker and its command-line tools, in one binary.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use strom_broker::config::{BrokerConfig, RawConfig};

#[derive(Parser)]
#[command(
    name = "strom",
    version,
    about = "Strom: a Kafka-compatible streaming platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (a single node by default: data in ./strom-data, Kafka protocol on :9092).
    Serve(ServeArgs),
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML file of settings, with Kafka's names (e.g. `"num.partitions" = 3`).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (log.dirs).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Listeners, e.g. PLAINTEXT://0.0.0.0:9092 (listeners).
    #[arg(long, value_name = "LISTENERS")]
    listeners: Option<String>,
    /// Addresses given to clients (advertised.listeners).
    #[arg(long, value_name = "LISTENERS")]
    advertised_listeners: Option<String>,
    /// This node's id (node.id).
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    node_id: Option<String>,
    /// A cluster's metadata in PostgreSQL, postgres://USER:PASS@HOST:PORT/DB
    /// (cluster.metadata.url); unset: a single node.
    #[arg(long, value_name = "URL")]
    cluster_metadata: Option<String>,
    /// A cluster's partition data in an S3-compatible store, s3://BUCKET/PREFIX
    /// (object.store.url; needs --cluster-metadata); unset: local logs.
    #[arg(long, value_name = "URL")]
    object_store: Option<String>,
    /// Any setting by its Kafka name, e.g. --override num.partitions=3 (repeatable).
    #[arg(long = "override", short = 'o', value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

/// Environment variables with the STROM_ prefix that are not broker settings.
const NON_CONFIG_ENV: &[&str] = &["STROM_LOG", "STROM_BOOTSTRAP", "STROM_BIN"];

fn load_config(args: &ServeArgs) -> Result<BrokerConfig, String> {
    let mut raw = RawConfig::defaults();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        raw.merge_toml(&text, &path.display().to_string())
            .map_err(|e| e.to_string())?;
    }
    let unknown = raw.merge_env(std::env::vars());
    for var in unknown {
        if !NON_CONFIG_ENV.contains(&var.as_str()) && !var.starts_with("STROM_TEST") {
            tracing::warn!(variable = %var, "environment variable names no Strom setting; ignored");
        }
    }
    let flags = [
        ("log.dirs", &args.data_dir),
        ("listeners", &args.listeners),
        ("advertised.listeners", &args.advertised_listeners),
        ("node.id", &args.node_id),
        ("cluster.metadata.url", &args.cluster_metadata),
        ("object.store.url", &args.object_store),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            raw.set_pinned(key, v, "command line")
                .map_err(|e| e.to_string())?;
        }
    }
    for o in &args.overrides {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| format!("--override {o:?}: expected KEY=VALUE"))?;
        raw.set_pinned(k, v, "--override")
            .map_err(|e| e.to_string())?;
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string());
    raw.expand_placeholders(&|k| std::env::var(k).ok(), hostname)
        .map_err(|e| e.to_string())?;
    BrokerConfig::from_raw(raw).map_err(|e| e.to_string())
}

/// Registers for SIGTERM and SIGINT at once (a signal that arrives during start-up then takes
/// the graceful path when the broker is ready, instead of killing the process), and returns the
/// future that completes on the first of them. Must be called inside the runtime.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move { wait_for_signal(term, int).await }
}

async fn wait_for_signal(
    term: std::io::Result<tokio::signal::unix::Signal>,
    int: std::io::Result<tokio::signal::unix::Signal>,
) {
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Parses the command line; a usage error is one line naming the problem, as for a bad
/// setting, rather than clap's multi-line usage block.
fn parse_args() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                let _ = e.print();
                Err(ExitCode::SUCCESS)
            }
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
                Err(ExitCode::from(2))
            }
            _ => {
                let rendered = e.render().to_string();
                eprintln!("strom: {} (see 'strom --help')", first_paragraph(&rendered));
                Err(ExitCode::from(2))
            }
        },
    }
}

/// The message of a clap error on one line: its first paragraph, so a list
/// that follows a colon ("required arguments were not provided:") stays.
fn first_paragraph(rendered: &str) -> String {
    let text = rendered
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let text = text.trim_start_matches("error: ");
    if text.is_empty() {
        "invalid arguments".to_string()
    } else {
        text.to_string()
    }
}

fn main() -> ExitCode {
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // The client commands log only warnings unless STROM_LOG says otherwise.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        Command::Client(_) => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STROM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Client(command) => cli::run(command),
        Command::Serve(args) => {
            let config = match load_config(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("strom: configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            let gateway = match cli::gateway::config_for_broker(&config) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("strom: configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            // Process-wide settings, made while this is the only thread.
            strom_broker::memory::keep_freed_memory();
            strom_broker::memory::raise_open_files_limit();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("strom")
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("strom: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let served = runtime.block_on(async {
                let signal = shutdown_signal();
                cli::gateway::start_in_broker(&config, gateway).await?;
                strom_broker::server::run_with(config, signal, cli::gateway::broker_ready).await
            });
            match served {
                Ok(()) => ExitCode::SUCCESS,
                // A setting found wrong only when start-up uses it (a listener's ssl.* or
                // sasl.* values) is a configuration error like the others: exit code 2.
                Err(e)
                    if e.chain().any(|c| {
                        c.downcast_ref::<strom_broker::config::ConfigError>()
                            .is_some()
                            || c.downcast_ref::<
                                strom_broker::network::security::ListenerSecurityError,
                            >()
                            .is_some()
                    }) =>
                {
                    eprintln!("strom: configuration error: {e:#}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("strom: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_line(args: &[&str]) -> String {
        match Cli::try_parse_from(args) {
            Ok(_) => panic!("{args:?} parsed"),
            Err(e) => first_paragraph(&e.render().to_string()),
        }
    }

    #[test]
    fn usage_errors_keep_what_they_list() {
        // clap puts the missing arguments on the lines after the colon.
        let line = usage_line(&["strom", "topic", "delete-records", "t", "--before", "1"]);
        assert!(line.starts_with("the following required arguments were not provided:"));
        assert!(
            line.contains("--partition <P>|--all|--offset-json-file <FILE>"),
            "{line}"
        );
        assert!(!line.contains('\n') && !line.contains("Usage"), "{line}");
        let line = usage_line(&["strom", "topic", "--bogus", "list"]);
        assert_eq!(line, "unexpected argument '--bogus' found");
        let line = usage_line(&["strom", "cluster", "config", "get", "--broker", "-1"]);
        assert!(line.contains("-1") && line.contains("--broker"), "{line}");
        assert_eq!(first_paragraph("\n\n"), "invalid arguments");
    }
}
