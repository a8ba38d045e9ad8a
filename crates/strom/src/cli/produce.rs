//! `strom produce`: one record per line of stdin or a file.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use strom_client::{Compression, ProduceRecord, Producer, ProducerConfig, ProducerStats};
use tokio::sync::mpsc;

use super::output::print_json;
use super::{parse_key_value, ClientOpts, OutputFormat};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("expected 0, 1 or all, got {s:?}")),
    }
}

#[derive(Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Topic to produce to (created if the broker auto-creates topics).
    #[arg(short = 't', long)]
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (no SEP: the line is the value, no key).
    #[arg(short = 'K', long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header on every record (repeatable).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
    /// Produce to this partition (default: by key with Kafka's murmur2 partitioner; sticky for records without a key).
    #[arg(short = 'p', long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Compression codec of the record batches.
    #[arg(short = 'z', long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks, value_name = "0|1|all")]
    pub acks: i16,
    /// Bytes per partition batch before it is sent.
    #[arg(long, default_value_t = 1_000_000, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..=256 * 1024 * 1024))]
    pub batch_size: u64,
    /// How long a batch waits for more records before it is sent.
    #[arg(long, default_value_t = 5, value_name = "MS")]
    pub linger_ms: u64,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// Lines read from the input, in chunks.
struct Chunk {
    lines: Vec<Vec<u8>>,
    bytes: u64,
}

/// Reads the input on its own thread (stdin reads block).
fn spawn_reader(
    file: Option<PathBuf>,
    tx: mpsc::Sender<std::io::Result<Chunk>>,
) -> anyhow::Result<Option<u64>> {
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = match &file {
        Some(path) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        }
        None => (Box::new(std::io::stdin()), None),
    };
    std::thread::Builder::new()
        .name("strom-produce-input".into())
        .spawn(move || {
            let mut reader = BufReader::with_capacity(256 * 1024, input);
            loop {
                let mut lines = Vec::with_capacity(1024);
                let mut bytes = 0u64;
                while lines.len() < 4096 && bytes < 1024 * 1024 {
                    let mut line = Vec::new();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) => break,
                        Ok(n) => {
                            bytes += n as u64;
                            if line.last() == Some(&b'\n') {
                                line.pop();
                            }
                            lines.push(line);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                    // Interactive input: hand over what we have when no more is buffered.
                    if reader.buffer().is_empty() {
                        break;
                    }
                }
                if lines.is_empty() {
                    return;
                }
                if tx.blocking_send(Ok(Chunk { lines, bytes })).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the input thread")?;
    Ok(size)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Key and value of a line: split at the first separator when one is given
/// (no separator in the line: no key, the whole line is the value).
fn split_line(line: Vec<u8>, sep: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    if let Some(sep) = sep {
        if let Some(i) = find(&line, sep) {
            let line = Bytes::from(line);
            return (Some(line.slice(..i)), line.slice(i + sep.len()..));
        }
    }
    (None, Bytes::from(line))
}

fn rate_line(topic: &str, stats: &ProducerStats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mb = stats.delivered_bytes as f64 / 1e6;
    let mut line = format!(
        "% Produced {} message{} ({mb:.2} MB) to {topic} in {secs:.2} s: {:.0} msg/s, {:.2} MB/s",
        stats.delivered,
        if stats.delivered == 1 { "" } else { "s" },
        stats.delivered as f64 / secs,
        mb / secs,
    );
    if stats.failed > 0 {
        line.push_str(&format!("; {} failed", stats.failed));
    }
    line
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let client = args.opts.connect().await?;
    let config = ProducerConfig {
        acks: args.acks,
        compression: args.compression.into(),
        batch_size: args.batch_size as usize,
        linger: Duration::from_millis(args.linger_ms),
        // Retries of a batch stop after two request timeouts (60 s by default).
        delivery_timeout: client.request_timeout() * 2,
        ..ProducerConfig::default()
    };
    let mut producer = Producer::new(client, &args.topic, config).await?;
    if let Some(p) = args.partition {
        if p >= producer.partitions() {
            anyhow::bail!(
                "partition {p} does not exist: topic {} has {} partition{}",
                args.topic,
                producer.partitions(),
                if producer.partitions() == 1 { "" } else { "s" }
            );
        }
    }
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(Bytes::copy_from_slice(v.as_bytes()))))
        .collect();
    let sep = args.key_separator.as_deref().map(str::as_bytes);

    let (tx, mut rx) = mpsc::channel(8);
    let size = spawn_reader(args.file.clone(), tx)?;
    let show_progress = !args.no_progress && std::io::stderr().is_terminal();
    let bar = if show_progress {
        let bar = match size {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes} read ({bytes_per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        bar
    } else {
        ProgressBar::hidden()
    };

    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(args.linger_ms.clamp(1, 100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result: anyhow::Result<()> = async {
        loop {
            tokio::select! {
                chunk = rx.recv() => {
                    let Some(chunk) = chunk else { break };
                    let chunk = chunk.context("reading the input")?;
                    for line in chunk.lines {
                        let (key, value) = split_line(line, sep);
                        producer
                            .send(ProduceRecord {
                                partition: args.partition,
                                key,
                                value: Some(value),
                                headers: headers.clone(),
                                timestamp: None,
                            })
                            .await?;
                    }
                    bar.inc(chunk.bytes);
                    bar.set_message(format!("{} messages", producer.stats().delivered));
                }
                _ = ticker.tick() => {
                    producer.poll().await?;
                    bar.set_message(format!("{} messages", producer.stats().delivered));
                }
            }
        }
        producer.flush().await?;
        Ok(())
    }
    .await;
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let stats = producer.stats();
    eprintln!("{}", rate_line(&args.topic, &stats, elapsed));
    if args.opts.output == OutputFormat::Json {
        let secs = elapsed.as_secs_f64().max(1e-9);
        print_json(&json!({
            "topic": args.topic,
            "messages": stats.delivered,
            "bytes": stats.delivered_bytes,
            "failed": stats.queued.saturating_sub(stats.delivered),
            "requests": stats.requests,
            "seconds": secs,
            "messages_per_second": stats.delivered as f64 / secs,
            "megabytes_per_second": stats.delivered_bytes as f64 / 1e6 / secs,
        }))?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        let (k, v) = split_line(b"k1:v:1".to_vec(), Some(b":"));
        assert_eq!(k.as_deref(), Some(&b"k1"[..]));
        assert_eq!(&v[..], b"v:1");
        let (k, v) = split_line(b"novalue".to_vec(), Some(b"::"));
        assert_eq!(k, None);
        assert_eq!(&v[..], b"novalue");
        let (k, v) = split_line(b"a::b".to_vec(), Some(b"::"));
        assert_eq!(k.as_deref(), Some(&b"a"[..]));
        assert_eq!(&v[..], b"b");
        let (k, v) = split_line(b":x".to_vec(), Some(b":"));
        assert_eq!(k.as_deref(), Some(&b""[..]));
        assert_eq!(&v[..], b"x");
        let (k, v) = split_line(b"plain".to_vec(), None);
        assert_eq!((k, &v[..]), (None, &b"plain"[..]));
    }

    #[test]
    fn acks() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn rate_line_reads_well() {
        let stats = ProducerStats {
            queued: 1000,
            delivered: 1000,
            delivered_bytes: 2_000_000,
            failed: 0,
            requests: 3,
        };
        assert_eq!(
            rate_line("t", &stats, Duration::from_secs(2)),
            "% Produced 1000 messages (2.00 MB) to t in 2.00 s: 500 msg/s, 1.00 MB/s"
        );
    }
}
