//! `strom storage`: offline checks and repairs of a data directory (the broker must not be
//! running on it): `verify` (like `kafka-dump-log --verify`) and `recover-metadata`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use strom_broker::storage::{self, RecoverOptions};
use strom_log::verify::{verify_log_dir, LogVerification};
use strom_log::TopicPartition;

#[derive(Args)]
pub struct StorageArgs {
    #[command(subcommand)]
    pub command: StorageCommand,
}

#[derive(Subcommand)]
pub enum StorageCommand {
    /// Check every partition log (CRC-32C of each batch, header consistency, offset
    /// continuity, indexes, checkpoints); exits 1 naming the first bad batch.
    Verify {
        /// Data directory (log.dirs).
        #[arg(long, value_name = "DIR", default_value = "./strom-data")]
        data_dir: PathBuf,
        /// Only this topic's partitions (repeatable).
        #[arg(long, short = 't', value_name = "TOPIC")]
        topic: Vec<String>,
    },
    /// Rebuild a damaged or lost metadata log from the partition directories (topic names from
    /// the directory names, topic ids from their partition.metadata), keeping every record of
    /// the old log up to its first damaged batch; the old log is renamed aside, never deleted.
    /// Also writes a missing or damaged meta.properties (the old one kept aside).
    RecoverMetadata {
        /// Data directory (log.dirs).
        #[arg(long, value_name = "DIR", default_value = "./strom-data")]
        data_dir: PathBuf,
        /// Cluster id for a new meta.properties (default: a new id).
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        cluster_id: Option<String>,
        /// This node's id (node.id).
        #[arg(long, value_name = "ID", default_value_t = 0)]
        node_id: i32,
    },
}

pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    match args.command {
        StorageCommand::Verify { data_dir, topic } => verify(&data_dir, &topic),
        StorageCommand::RecoverMetadata {
            data_dir,
            cluster_id,
            node_id,
        } => recover(&data_dir, cluster_id, node_id),
    }
}

fn verify(data_dir: &Path, topics: &[String]) -> anyhow::Result<()> {
    let mut dirs: Vec<(TopicPartition, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(data_dir)
        .with_context(|| format!("cannot list {}", data_dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Ok(tp) = TopicPartition::parse_dir_name(&name) else {
            continue;
        };
        if entry.path().is_dir() && (topics.is_empty() || topics.contains(&tp.topic)) {
            dirs.push((tp, entry.path()));
        }
    }
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "no partition directories to verify in {}",
            data_dir.display()
        );
    }
    let mut first_problem = None;
    let mut damaged = 0;
    for (tp, dir) in &dirs {
        let report =
            verify_log_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        print_report(tp, &report);
        if let Some(p) = report.problems.first() {
            damaged += 1;
            first_problem.get_or_insert_with(|| p.to_string());
        }
    }
    match first_problem {
        Some(first) => bail!(
            "{damaged} of {} partition logs are damaged; first bad batch: {first}",
            dirs.len()
        ),
        None => {
            println!("{} partition logs verified, no problems", dirs.len());
            Ok(())
        }
    }
}

fn print_report(tp: &TopicPartition, r: &LogVerification) {
    println!(
        "{tp}: {} segments, {} batches, {} records, {} bytes, offsets {}..{}: {}",
        r.segments,
        r.batches,
        r.records,
        r.size_bytes,
        r.first_offset.max(0),
        r.next_offset,
        if r.is_ok() { "ok" } else { "DAMAGED" }
    );
    for p in &r.problems {
        println!("  ERROR {p}");
    }
    if r.problems_truncated {
        println!("  ERROR ... (more problems not listed)");
    }
    for w in &r.warnings {
        println!("  warning {w}");
    }
}

fn recover(data_dir: &Path, cluster_id: Option<String>, node_id: i32) -> anyhow::Result<()> {
    let report = storage::recover_metadata(
        data_dir,
        &RecoverOptions {
            cluster_id,
            node_id,
        },
    )?;
    if let Some(id) = &report.wrote_meta_properties {
        println!("wrote meta.properties with cluster.id={id} node.id={node_id}");
    }
    println!(
        "kept {} records of the old metadata log{}",
        report.salvaged_records,
        report
            .salvage_stopped
            .as_deref()
            .map(|why| format!(" (stopped: {why})"))
            .unwrap_or_default()
    );
    for (name, id, partitions) in &report.rebuilt_topics {
        println!("rebuilt topic {name} (id {id}, {partitions} partitions); its topic configs, if any, must be set again");
    }
    for path in &report.adopted_strays {
        println!("took back stray directory {}", path.display());
    }
    for (path, why) in &report.skipped {
        println!("left alone {}: {why}", path.display());
    }
    for path in &report.kept_aside {
        println!("kept aside {}", path.display());
    }
    println!("metadata log rebuilt in {}", data_dir.display());
    Ok(())
}
