//! `strom consume`: fetch records from a topic's partitions and print them.
//!
//! Without `--group`, partitions are assigned manually (all, or `--partition`).
//! With `--group`, the consumer joins the group (classic protocol, `range`
//! assignment, as Kafka's console consumer does) and reads the partitions the
//! group gives it, from the group's committed offsets; what it consumed is
//! committed every 5 s, before each rebalance and on exit. `--group` with
//! `--partition` does not join: it reads those partitions and commits outside
//! any generation (Kafka accepts that only while the group has no members).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use strom_client::{
    Client, CommittedOffsets, FetchTarget, FetchedPartition, KafkaCode, Membership, OffsetSpec,
    Record,
};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::format::{Format, View};
use super::{ClientOpts, OutputFormat};

/// Where to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOffset {
    Beginning,
    End,
    /// The group's committed offset (needs --group).
    Stored,
    Absolute(i64),
    /// N before the end.
    FromEnd(i64),
}

fn parse_offset(s: &str) -> Result<StartOffset, String> {
    match s {
        "beginning" | "earliest" => Ok(StartOffset::Beginning),
        "end" | "latest" => Ok(StartOffset::End),
        "stored" => Ok(StartOffset::Stored),
        _ => match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(StartOffset::Absolute(n)),
            Ok(n) => Ok(StartOffset::FromEnd(-n)),
            Err(_) => Err(format!(
                "expected beginning, end, stored, N or -N, got {s:?}"
            )),
        },
    }
}

#[derive(Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Topic to consume.
    #[arg(short = 't', long)]
    pub topic: String,
    /// Only this partition (repeatable; default: all).
    #[arg(short = 'p', long = "partition", value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
    pub partitions: Vec<i32>,
    /// Start at: beginning, end, stored (the group's offset), N, or -N (N before the end). Default: beginning.
    #[arg(short = 'o', long, value_name = "OFFSET", value_parser = parse_offset, allow_hyphen_values = true)]
    pub offset: Option<StartOffset>,
    /// Start at the first record with a timestamp at or after MS (ms since the epoch).
    #[arg(long, value_name = "MS", conflicts_with = "offset")]
    pub timestamp: Option<i64>,
    /// Consume as a member of this group: the group assigns the partitions, reading starts at its committed offsets and what was consumed is committed. With --partition: those partitions, committed without joining.
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Output format: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp, %h headers, %K/%S key/value length; \n \t escapes. Default: '%v\n'.
    #[arg(short = 'f', long, value_name = "FMT")]
    pub format: Option<String>,
    /// Print the key, SEP, then the value (shorthand for --format '%k<SEP>%v\n').
    #[arg(short = 'K', long, value_name = "SEP", conflicts_with = "format")]
    pub key_separator: Option<String>,
    /// Exit once every partition reached its end.
    #[arg(short = 'e', long = "exit")]
    pub exit: bool,
    /// Exit after N records.
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<u64>,
    /// Don't print "% Reached end of topic ..." lines.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

struct PartState {
    partition: i32,
    position: i64,
    max_bytes: i32,
    eof_reported: bool,
    at_eof: bool,
    committed: Option<i64>,
}

const MAX_PARTITION_BYTES: i32 = 64 * 1024 * 1024;

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let fmt = match (&args.format, &args.key_separator) {
        (Some(f), _) => Format::parse(f).map_err(|e| anyhow::anyhow!("--format: {e}"))?,
        (None, Some(sep)) => Format::parse(&format!("%k{}%v\\n", sep.replace('%', "%%")))
            .map_err(|e| anyhow::anyhow!("--key-separator: {e}"))?,
        (None, None) => Format::parse("%v\\n").map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    if args.offset == Some(StartOffset::Stored) && args.group.is_none() {
        bail!("--offset stored needs --group");
    }
    let client = args.opts.connect().await?;
    let topic = args.topic.clone();
    let meta = match client.topic_metadata(&topic, false).await {
        Ok(m) => m,
        Err(e) if e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
            bail!("topic {topic} does not exist (UNKNOWN_TOPIC_OR_PARTITION)")
        }
        Err(e) => return Err(e.into()),
    };
    let all: Vec<i32> = meta.partitions.iter().map(|p| p.partition).collect();
    let mut chosen = if args.partitions.is_empty() {
        all.clone()
    } else {
        args.partitions.clone()
    };
    chosen.sort_unstable();
    chosen.dedup();
    for p in &chosen {
        if !all.contains(p) {
            bail!(
                "partition {p} does not exist: topic {topic} has {} partition{}",
                all.len(),
                if all.len() == 1 { "" } else { "s" }
            );
        }
    }
    let mut membership = match &args.group {
        Some(g) if args.partitions.is_empty() => Some(Membership::new(
            Arc::clone(&client),
            g,
            std::slice::from_ref(&topic),
        )),
        _ => None,
    };
    let mut consumer = Consumer {
        client: Arc::clone(&client),
        topic: topic.clone(),
        topic_id: meta.id,
        out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
        fmt,
        json: args.opts.output == OutputFormat::Json,
        buf: Vec::with_capacity(4096),
        consumed: 0,
        args: &args,
    };
    let result = loop {
        if let Some(m) = membership.as_mut() {
            let group = args.group.as_deref().unwrap_or_default();
            let mut assigned = m
                .join()
                .await
                .with_context(|| format!("joining group {group}"))?;
            chosen = assigned.remove(&topic).unwrap_or_default();
            chosen.sort_unstable();
            tracing::info!(group, generation = m.generation(), partitions = ?chosen, "joined the group");
        }
        let mut parts = start_positions(&client, &args, &topic, &chosen).await?;
        let result = consumer.run(&mut parts, membership.as_ref()).await;
        consumer.out.flush()?;
        let committed = match &args.group {
            Some(g) => commit(&client, g, membership.as_ref(), &topic, &mut parts).await,
            None => Ok(()),
        };
        match (result, committed) {
            (Ok(Exit::Rebalance), Ok(())) => continue,
            // The generation is over; its last commit may be refused, as in Kafka.
            (Ok(Exit::Rebalance), Err(e)) if lost_generation(&e) => {
                tracing::debug!(error = %e, "commit before rejoining refused");
                continue;
            }
            (Ok(_), committed) => break committed,
            (Err(e), _) => break Err(e),
        }
    };
    if let Some(m) = membership.as_mut() {
        if let Err(e) = m.leave().await {
            tracing::warn!(error = %e, "leaving the group failed");
        }
    }
    result
}

/// Whether a commit failed because this member's generation ended (a rebalance began, or
/// the session was lost): rejoin rather than fail.
fn lost_generation(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<strom_client::Error>())
        .filter_map(strom_client::Error::code)
        .any(|c| {
            matches!(
                c,
                KafkaCode::REBALANCE_IN_PROGRESS
                    | KafkaCode::ILLEGAL_GENERATION
                    | KafkaCode::UNKNOWN_MEMBER_ID
            )
        })
}

/// Where each partition starts: the group's committed offset, else `--offset`/`--timestamp`.
async fn start_positions(
    client: &Client,
    args: &ConsumeArgs,
    topic: &str,
    chosen: &[i32],
) -> anyhow::Result<Vec<PartState>> {
    let committed: BTreeMap<i32, i64> = match &args.group {
        Some(g) if !chosen.is_empty() => client
            .fetch_committed(g, Some(&[(topic.to_string(), chosen.to_vec())]))
            .await?
            .remove(topic)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, o)| *o >= 0)
            .collect(),
        _ => BTreeMap::new(),
    };
    let need: Vec<i32> = chosen
        .iter()
        .copied()
        .filter(|p| !committed.contains_key(p))
        .collect();
    let mut start: HashMap<i32, i64> = committed.iter().map(|(p, o)| (*p, *o)).collect();
    if !need.is_empty() {
        let spec = match (
            args.timestamp,
            args.offset.unwrap_or(StartOffset::Beginning),
        ) {
            (Some(ts), _) => Some(OffsetSpec::Timestamp(ts)),
            (None, StartOffset::Beginning | StartOffset::Stored) => Some(OffsetSpec::Earliest),
            (None, StartOffset::End) => Some(OffsetSpec::Latest),
            (None, StartOffset::Absolute(n)) => {
                for p in &need {
                    start.insert(*p, n);
                }
                None
            }
            (None, StartOffset::FromEnd(_)) => Some(OffsetSpec::Latest),
        };
        if let Some(spec) = spec {
            let listed = client.list_offsets(topic, &need, spec).await?;
            let mut latest_cache = None;
            for p in &need {
                let r = listed.get(p).cloned().unwrap_or_else(|| {
                    Err(strom_client::Error::Other(format!(
                        "no offset for partition {p}"
                    )))
                })?;
                let mut o = r.offset;
                if o < 0 {
                    // No record at or after the timestamp: the end.
                    if latest_cache.is_none() {
                        latest_cache = Some(
                            client
                                .list_offsets(topic, &need, OffsetSpec::Latest)
                                .await?,
                        );
                    }
                    o = latest_cache
                        .as_ref()
                        .and_then(|m| m.get(p))
                        .and_then(|r| r.as_ref().ok())
                        .map_or(0, |l| l.offset);
                }
                if let Some(StartOffset::FromEnd(n)) = args.offset {
                    o = (o - n).max(0);
                }
                start.insert(*p, o);
            }
            if matches!(args.offset, Some(StartOffset::FromEnd(_))) {
                // Not before the log start.
                let earliest = client
                    .list_offsets(topic, &need, OffsetSpec::Earliest)
                    .await?;
                for p in &need {
                    if let Some(Ok(e)) = earliest.get(p) {
                        if let Some(s) = start.get_mut(p) {
                            *s = (*s).max(e.offset);
                        }
                    }
                }
            }
        }
    }
    let parts: Vec<PartState> = chosen
        .iter()
        .map(|p| PartState {
            partition: *p,
            position: start.get(p).copied().unwrap_or(0),
            max_bytes: 1024 * 1024,
            eof_reported: false,
            at_eof: false,
            committed: committed.get(p).copied(),
        })
        .collect();

    Ok(parts)
}

async fn commit(
    client: &Client,
    group: &str,
    member: Option<&Membership>,
    topic: &str,
    parts: &mut [PartState],
) -> anyhow::Result<()> {
    let mut offsets: CommittedOffsets = BTreeMap::new();
    for p in parts.iter().filter(|p| p.committed != Some(p.position)) {
        offsets
            .entry(topic.to_string())
            .or_default()
            .insert(p.partition, p.position);
    }
    if offsets.is_empty() {
        return Ok(());
    }
    client
        .commit_offsets_as(group, member.map(Membership::committer), &offsets)
        .await
        .with_context(|| format!("committing the offsets of group {group}"))?;
    for p in parts.iter_mut() {
        p.committed = Some(p.position);
    }
    Ok(())
}

struct Consumer<'a> {
    client: Arc<Client>,
    topic: String,
    topic_id: Uuid,
    out: BufWriter<std::io::Stdout>,
    fmt: Format,
    json: bool,
    buf: Vec<u8>,
    consumed: u64,
    args: &'a ConsumeArgs,
}

enum Step {
    Continue,
    Done,
}

/// Why [`Consumer::run`] returned.
enum Exit {
    /// Done: --count, --exit, or a signal.
    Done,
    /// The group is rebalancing: commit and rejoin.
    Rebalance,
}

impl Consumer<'_> {
    async fn run(
        &mut self,
        parts: &mut [PartState],
        member: Option<&Membership>,
    ) -> anyhow::Result<Exit> {
        let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let max_wait_ms = if self.args.exit { 100 } else { 500 };
        let mut failing_since: Option<Instant> = None;
        let mut last_commit = Instant::now();
        if self.args.count == Some(0) {
            return Ok(Exit::Done);
        }
        loop {
            if member.is_some_and(Membership::rebalance_needed) {
                return Ok(Exit::Rebalance);
            }
            // Partitions by leader.
            let mut by_leader: BTreeMap<i32, Vec<FetchTarget>> = BTreeMap::new();
            let mut leaderless = false;
            for p in parts.iter() {
                if self.args.exit && p.at_eof {
                    continue;
                }
                match self.client.cached_leader(&self.topic, p.partition) {
                    Some(l) => by_leader.entry(l).or_default().push(FetchTarget {
                        topic: self.topic.clone(),
                        topic_id: self.topic_id,
                        partition: p.partition,
                        offset: p.position,
                        max_bytes: p.max_bytes,
                    }),
                    None => leaderless = true,
                }
            }
            if leaderless {
                if let Err(e) = self.client.topic_metadata(&self.topic, false).await {
                    self.note_failure(&mut failing_since, e.into())?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                continue;
            }
            if by_leader.is_empty() {
                if member.is_none() || self.args.exit {
                    return Ok(Exit::Done); // every partition at its end, with --exit
                }
                // A member with nothing assigned waits for the next rebalance.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    _ = sigint.recv() => return Ok(Exit::Done),
                    _ = sigterm.recv() => return Ok(Exit::Done),
                }
            }
            let mut set = JoinSet::new();
            for (leader, targets) in by_leader {
                let client = Arc::clone(&self.client);
                set.spawn(async move {
                    client
                        .fetch(leader, &targets, max_wait_ms, 64 * 1024 * 1024)
                        .await
                });
            }
            let round = async {
                let mut results = Vec::new();
                while let Some(r) = set.join_next().await {
                    results.push(r);
                }
                results
            };
            let results = tokio::select! {
                r = round => r,
                _ = sigint.recv() => return Ok(Exit::Done),
                _ = sigterm.recv() => return Ok(Exit::Done),
            };
            let mut round_failed = None;
            for r in results {
                let r = r.map_err(|e| anyhow::anyhow!("a fetch task failed: {e}"))?;
                match r {
                    Ok(fetched) => {
                        for f in fetched {
                            match self.handle(parts, f).await? {
                                Step::Continue => {}
                                Step::Done => return Ok(Exit::Done),
                            }
                        }
                    }
                    Err(e) => round_failed = Some(e),
                }
            }
            self.out.flush()?;
            match round_failed {
                Some(e) => {
                    self.note_failure(&mut failing_since, e.into())?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = self.client.topic_metadata(&self.topic, false).await;
                }
                None => failing_since = None,
            }
            if self.args.exit && parts.iter().all(|p| p.at_eof) {
                return Ok(Exit::Done);
            }
            if let Some(g) = &self.args.group {
                if last_commit.elapsed() >= Duration::from_secs(5) {
                    match commit(&self.client, g, member, &self.topic, parts).await {
                        Ok(()) => {}
                        Err(e) if member.is_some() && lost_generation(&e) => {
                            return Ok(Exit::Rebalance)
                        }
                        Err(e) => return Err(e),
                    }
                    last_commit = Instant::now();
                }
            }
        }
    }

    /// Gives up once requests failed for longer than the request timeout.
    fn note_failure(&self, since: &mut Option<Instant>, e: anyhow::Error) -> anyhow::Result<()> {
        let start = *since.get_or_insert_with(Instant::now);
        if start.elapsed() >= self.client.request_timeout() {
            return Err(e);
        }
        tracing::debug!(error = %e, "fetch failed; retrying");
        Ok(())
    }

    async fn handle(
        &mut self,
        parts: &mut [PartState],
        f: FetchedPartition,
    ) -> anyhow::Result<Step> {
        let Some(idx) = parts.iter().position(|p| p.partition == f.partition) else {
            return Ok(Step::Continue);
        };
        match f.error_code {
            0 => {}
            KafkaCode::OFFSET_OUT_OF_RANGE => {
                let p = &mut parts[idx];
                let earliest = self
                    .client
                    .list_offsets(&self.topic, &[p.partition], OffsetSpec::Earliest)
                    .await?;
                let latest = self
                    .client
                    .list_offsets(&self.topic, &[p.partition], OffsetSpec::Latest)
                    .await?;
                let lo = earliest
                    .get(&p.partition)
                    .and_then(|r| r.as_ref().ok())
                    .map_or(0, |o| o.offset);
                let hi = latest
                    .get(&p.partition)
                    .and_then(|r| r.as_ref().ok())
                    .map_or(0, |o| o.offset);
                let to = if p.position < lo { lo } else { hi };
                if !self.args.quiet {
                    self.out.flush()?;
                    eprintln!(
                        "% Offset {} is out of range for {} [{}] (log {lo}..{hi}); resetting to {to}",
                        p.position, self.topic, p.partition
                    );
                }
                p.position = to;
                return Ok(Step::Continue);
            }
            code if KafkaCode(code).needs_metadata_refresh() || KafkaCode(code).is_retriable() => {
                tracing::debug!(
                    partition = f.partition,
                    code,
                    "fetch error; refreshing metadata"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                match self.client.topic_metadata(&self.topic, false).await {
                    Ok(_) => {}
                    Err(e) if e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                        bail!(
                            "topic {} does not exist (UNKNOWN_TOPIC_OR_PARTITION)",
                            self.topic
                        )
                    }
                    Err(e) => return Err(e.into()),
                }
                return Ok(Step::Continue);
            }
            code => bail!(
                "fetch {} [{}]: {}",
                self.topic,
                f.partition,
                KafkaCode(code)
            ),
        }
        let mut delivered = false;
        for r in &f.records {
            if r.offset < parts[idx].position {
                continue;
            }
            self.emit(r, f.partition)?;
            parts[idx].position = r.offset + 1;
            delivered = true;
            self.consumed += 1;
            if self.args.count.is_some_and(|c| self.consumed >= c) {
                return Ok(Step::Done);
            }
        }
        let p = &mut parts[idx];
        if !delivered {
            match f.next_offset {
                Some(n) if n > p.position => p.position = n, // only control records
                _ => {}
            }
            if f.truncated {
                p.max_bytes = p.max_bytes.saturating_mul(2).min(MAX_PARTITION_BYTES);
            }
        } else {
            p.eof_reported = false;
        }
        if p.position >= f.high_watermark && f.high_watermark >= 0 {
            p.at_eof = true;
            if !p.eof_reported {
                p.eof_reported = true;
                let (partition, position) = (p.partition, p.position);
                let all_done = parts.iter().all(|q| q.at_eof);
                if !self.args.quiet {
                    self.out.flush()?;
                    eprintln!(
                        "% Reached end of topic {} [{partition}] at offset {position}{}",
                        self.topic,
                        if self.args.exit && all_done {
                            ": exiting"
                        } else {
                            ""
                        }
                    );
                }
            }
        } else {
            p.at_eof = false;
        }
        Ok(Step::Continue)
    }

    fn emit(&mut self, r: &Record, partition: i32) -> anyhow::Result<()> {
        self.buf.clear();
        let headers: Vec<(String, Option<bytes::Bytes>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if self.json {
            let text = |b: &Option<bytes::Bytes>| {
                b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
            };
            let v = json!({
                "topic": self.topic,
                "partition": partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": text(&r.key),
                "value": text(&r.value),
                "headers": headers.iter().map(|(k, v)| json!([k, text(v)])).collect::<Vec<_>>(),
            });
            serde_json::to_writer(&mut self.buf, &v)?;
            self.buf.push(b'\n');
        } else {
            self.fmt.render(
                &View {
                    topic: &self.topic,
                    partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.as_ref(),
                    value: r.value.as_ref(),
                    headers: &headers,
                },
                &mut self.buf,
            );
        }
        self.out.write_all(&self.buf)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("beginning"), Ok(StartOffset::Beginning));
        assert_eq!(parse_offset("end"), Ok(StartOffset::End));
        assert_eq!(parse_offset("stored"), Ok(StartOffset::Stored));
        assert_eq!(parse_offset("42"), Ok(StartOffset::Absolute(42)));
        assert_eq!(parse_offset("-10"), Ok(StartOffset::FromEnd(10)));
        assert!(parse_offset("soon").is_err());
    }
}
