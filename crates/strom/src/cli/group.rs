//! `strom group list|describe|reset-offsets|delete`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Value};
use strom_client::{Client, CommittedOffsets, KafkaCode, OffsetSpec};

use super::output::{print, print_json, Table};
use super::time::{parse_datetime, parse_duration_ms};
use super::{ClientOpts, OutputFormat};

#[derive(Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// List consumer groups (ListGroups on every broker).
    List,
    /// Members, assignments, and lag per partition (committed offset vs
    /// log end offset).
    Describe {
        /// Group id.
        group: String,
    },
    /// Reset a group's committed offsets; prints the plan and changes
    /// nothing unless --execute. The group must have no active members.
    #[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_current", "to_datetime", "by_duration", "to_offset", "shift_by"])))]
    #[command(group(ArgGroup::new("which").required(true).args(["topics", "all_topics"])))]
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic to reset, optionally with partitions: T or T:0,1,2 (repeatable).
        #[arg(long = "topic", short = 't', value_name = "TOPIC[:P,P...]")]
        topics: Vec<String>,
        /// Every topic the group has committed offsets for.
        #[arg(long)]
        all_topics: bool,
        /// To the log start offset.
        #[arg(long)]
        to_earliest: bool,
        /// To the log end offset.
        #[arg(long)]
        to_latest: bool,
        /// To the first offset at or after a time: YYYY-MM-DDTHH:mm:SS[.sss][Z|±HH:MM] (UTC without a zone) or ms since the epoch.
        #[arg(long, value_name = "DATETIME", value_parser = parse_datetime)]
        to_datetime: Option<i64>,
        /// To the committed offset (the log end offset where there is none).
        #[arg(long)]
        to_current: bool,
        /// To the first offset at or after now minus an ISO-8601 duration
        /// (PnDTnHnMnS, e.g. PT30M or P1DT12H).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        by_duration: Option<i64>,
        /// To an offset (clamped to the log's range, as Kafka does).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
        to_offset: Option<i64>,
        /// Move the committed offset by N (negative: back), clamped to the
        /// log's range; every partition needs a committed offset.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        shift_by: Option<i64>,
        /// Commit the new offsets (without it: a dry run).
        #[arg(long)]
        execute: bool,
        /// Only print the plan (the default).
        #[arg(long, conflicts_with = "execute")]
        dry_run: bool,
    },
    /// Delete consumer groups (DeleteGroups) with their committed offsets.
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let opts = args.opts;
    let client = opts.connect().await?;
    match args.command {
        GroupCommand::List => list(&client, opts.output).await,
        GroupCommand::Describe { group } => describe(&client, opts.output, &group).await,
        GroupCommand::ResetOffsets {
            group,
            topics,
            all_topics,
            to_earliest,
            to_latest,
            to_current,
            to_datetime,
            by_duration,
            to_offset,
            shift_by,
            execute,
            dry_run: _,
        } => {
            let target = if to_earliest {
                Target::Earliest
            } else if to_latest {
                Target::Latest
            } else if to_current {
                Target::Current
            } else if let Some(t) = to_datetime {
                Target::Datetime(t)
            } else if let Some(d) = by_duration {
                Target::Datetime(now_ms()?.saturating_sub(d))
            } else if let Some(o) = to_offset {
                Target::Offset(o)
            } else if let Some(n) = shift_by {
                Target::ShiftBy(n)
            } else {
                bail!("give one of --to-earliest, --to-latest, --to-current, --to-datetime, --by-duration, --to-offset, --shift-by");
            };
            reset(
                &client,
                opts.output,
                &group,
                &topics,
                all_topics,
                target,
                execute,
            )
            .await
        }
        GroupCommand::Delete { groups } => delete(&client, opts.output, &groups).await,
    }
}

async fn list(client: &Client, output: OutputFormat) -> anyhow::Result<()> {
    let groups = client.list_groups().await?;
    match output {
        OutputFormat::Json => print_json(&Value::Array(
            groups
                .iter()
                .map(|g| {
                    json!({
                        "group": g.group_id,
                        "state": (!g.state.is_empty()).then_some(&g.state),
                        "type": (!g.group_type.is_empty()).then_some(&g.group_type),
                        "protocol_type": g.protocol_type,
                        "coordinator": g.coordinator,
                    })
                })
                .collect(),
        )),
        OutputFormat::Table => {
            let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR"]);
            for g in &groups {
                t.row(vec![
                    g.group_id.clone(),
                    if g.state.is_empty() {
                        "-".into()
                    } else {
                        g.state.clone()
                    },
                    if g.protocol_type.is_empty() {
                        "-".into()
                    } else {
                        g.protocol_type.clone()
                    },
                    g.coordinator.to_string(),
                ]);
            }
            print(&t.render())
        }
    }
}

/// Log end offsets of the given partitions, topic by topic.
async fn end_offsets(
    client: &Client,
    parts: &BTreeMap<String, BTreeSet<i32>>,
    spec: OffsetSpec,
) -> anyhow::Result<BTreeMap<(String, i32), Result<i64, String>>> {
    let mut out = BTreeMap::new();
    for (topic, ps) in parts {
        let ps: Vec<i32> = ps.iter().copied().collect();
        match client.list_offsets(topic, &ps, spec).await {
            Ok(m) => {
                for (p, r) in m {
                    out.insert(
                        (topic.clone(), p),
                        r.map(|o| o.offset).map_err(|e| e.to_string()),
                    );
                }
            }
            Err(e) => {
                for p in ps {
                    out.insert((topic.clone(), p), Err(e.to_string()));
                }
            }
        }
    }
    Ok(out)
}

async fn describe(client: &Client, output: OutputFormat, group: &str) -> anyhow::Result<()> {
    let desc = client.describe_group(group).await?;
    let committed = client.fetch_committed(group, None).await?;
    if desc.state == "Dead" && desc.members.is_empty() && committed.is_empty() {
        bail!("group {group} does not exist (GROUP_ID_NOT_FOUND)");
    }
    // Every partition that is committed or assigned.
    let mut parts: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut owner: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for (t, ps) in &committed {
        parts
            .entry(t.clone())
            .or_default()
            .extend(ps.keys().copied());
    }
    for (i, m) in desc.members.iter().enumerate() {
        for (t, ps) in &m.assignment {
            parts
                .entry(t.clone())
                .or_default()
                .extend(ps.iter().copied());
            for p in ps {
                owner.insert((t.clone(), *p), i);
            }
        }
    }
    let ends = end_offsets(client, &parts, OffsetSpec::Latest).await?;
    struct Row {
        topic: String,
        partition: i32,
        current: Option<i64>,
        end: Option<i64>,
        lag: Option<i64>,
        member: Option<usize>,
    }
    let mut rows = Vec::new();
    for (t, ps) in &parts {
        for p in ps {
            let current = committed
                .get(t)
                .and_then(|m| m.get(p))
                .copied()
                .filter(|o| *o >= 0);
            let end = ends
                .get(&(t.clone(), *p))
                .and_then(|r| r.as_ref().ok())
                .copied();
            let lag = match (current, end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            rows.push(Row {
                topic: t.clone(),
                partition: *p,
                current,
                end,
                lag,
                member: owner.get(&(t.clone(), *p)).copied(),
            });
        }
    }
    match output {
        OutputFormat::Json => print_json(&json!({
            "group": desc.group_id,
            "state": desc.state,
            "protocol_type": desc.protocol_type,
            "protocol": desc.protocol,
            "coordinator": {"id": desc.coordinator.node_id, "host": desc.coordinator.host, "port": desc.coordinator.port},
            "members": desc.members.iter().map(|m| json!({
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "host": m.client_host,
                "assignment": m.assignment,
            })).collect::<Vec<_>>(),
            "offsets": rows.iter().map(|r| json!({
                "topic": r.topic,
                "partition": r.partition,
                "current_offset": r.current,
                "log_end_offset": r.end,
                "lag": r.lag,
                "member_id": r.member.map(|i| desc.members[i].member_id.clone()),
            })).collect::<Vec<_>>(),
            "total_lag": rows.iter().filter_map(|r| r.lag).sum::<i64>(),
        })),
        OutputFormat::Table => {
            let dash = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            let mut text = format!(
                "Group:        {}\nState:        {}\nProtocol:     {}\nCoordinator:  {} ({})\nMembers:      {}\nTotal lag:    {}\n\n",
                desc.group_id,
                desc.state,
                match (desc.protocol_type.as_str(), desc.protocol.as_str()) {
                    ("", _) => "-".to_string(),
                    (t, "") => t.to_string(),
                    (t, p) => format!("{t} ({p})"),
                },
                desc.coordinator.node_id,
                desc.coordinator.addr(),
                desc.members.len(),
                rows.iter().filter_map(|r| r.lag).sum::<i64>(),
            );
            let mut t = Table::new(&[
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID",
            ]);
            for r in &rows {
                let m = r.member.map(|i| &desc.members[i]);
                t.row(vec![
                    r.topic.clone(),
                    r.partition.to_string(),
                    dash(r.current),
                    dash(r.end),
                    dash(r.lag),
                    m.map_or("-".into(), |m| m.member_id.clone()),
                    m.map_or("-".into(), |m| m.client_host.clone()),
                    m.map_or("-".into(), |m| m.client_id.clone()),
                ]);
            }
            if rows.is_empty() {
                text.push_str("(no committed offsets and no assignments)\n");
            } else {
                text.push_str(&t.render());
            }
            print(&text)
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Earliest,
    Latest,
    Current,
    Datetime(i64),
    Offset(i64),
    ShiftBy(i64),
}

fn now_ms() -> anyhow::Result<i64> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?;
    Ok(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

/// `T` or `T:0,1,2`.
fn parse_topic_spec(s: &str) -> anyhow::Result<(String, Option<Vec<i32>>)> {
    match s.split_once(':') {
        None => Ok((s.to_string(), None)),
        Some((t, ps)) => {
            let parts = ps
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .with_context(|| format!("bad partition {p:?} in --topic {s}"))
                })
                .collect::<anyhow::Result<Vec<i32>>>()?;
            Ok((t.to_string(), Some(parts)))
        }
    }
}

async fn reset(
    client: &Client,
    output: OutputFormat,
    group: &str,
    topic_specs: &[String],
    all_topics: bool,
    target: Target,
    execute: bool,
) -> anyhow::Result<()> {
    // A group that does not exist yet may be given offsets (as with Kafka).
    match client.describe_group(group).await {
        Ok(desc) if desc.state != "Empty" && desc.state != "Dead" => bail!(
            "assignments can only be reset if group {group} is inactive, but its state is {} ({} member{}); stop its consumers first",
            desc.state,
            desc.members.len(),
            if desc.members.len() == 1 { "" } else { "s" }
        ),
        Ok(_) => {}
        Err(e) if e.code() == Some(KafkaCode::GROUP_ID_NOT_FOUND) => {}
        Err(e) => return Err(e.into()),
    }
    let committed = client.fetch_committed(group, None).await?;
    let mut parts: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    if all_topics {
        for (t, ps) in &committed {
            parts
                .entry(t.clone())
                .or_default()
                .extend(ps.keys().copied());
        }
        if parts.is_empty() {
            bail!("group {group} has no committed offsets; name the topics with --topic");
        }
    }
    for spec in topic_specs {
        let (topic, only) = parse_topic_spec(spec)?;
        let meta = match client.topic_metadata(&topic, false).await {
            Ok(m) => m,
            Err(e) if e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {
                bail!("topic {topic} does not exist (UNKNOWN_TOPIC_OR_PARTITION)")
            }
            Err(e) => return Err(e.into()),
        };
        let all: Vec<i32> = meta.partitions.iter().map(|p| p.partition).collect();
        let chosen = match only {
            None => all,
            Some(ps) => {
                for p in &ps {
                    if !all.contains(p) {
                        bail!("topic {topic} has no partition {p}");
                    }
                }
                ps
            }
        };
        parts.entry(topic).or_default().extend(chosen);
    }
    let earliest = end_offsets(client, &parts, OffsetSpec::Earliest).await?;
    let latest = end_offsets(client, &parts, OffsetSpec::Latest).await?;
    let by_time = match target {
        Target::Datetime(ts) => Some(end_offsets(client, &parts, OffsetSpec::Timestamp(ts)).await?),
        _ => None,
    };
    let mut plan: Vec<(String, i32, Option<i64>, i64)> = Vec::new();
    for (t, ps) in &parts {
        for p in ps {
            let key = (t.clone(), *p);
            let lo = earliest
                .get(&key)
                .cloned()
                .unwrap_or_else(|| Err("no answer".into()))
                .map_err(|e| anyhow::anyhow!("earliest offset of {t}[{p}]: {e}"))?;
            let hi = latest
                .get(&key)
                .cloned()
                .unwrap_or_else(|| Err("no answer".into()))
                .map_err(|e| anyhow::anyhow!("latest offset of {t}[{p}]: {e}"))?;
            let current = committed
                .get(t)
                .and_then(|m| m.get(p))
                .copied()
                .filter(|o| *o >= 0);
            let new = match target {
                Target::Earliest => lo,
                Target::Latest => hi,
                Target::Current => current.unwrap_or(hi),
                Target::Offset(o) => o.clamp(lo, hi),
                Target::ShiftBy(n) => match current {
                    Some(c) => c.saturating_add(n).clamp(lo, hi),
                    None => bail!(
                        "cannot shift the offset of {t}[{p}]: group {group} has no committed offset there"
                    ),
                },
                Target::Datetime(_) => {
                    let found = by_time
                        .as_ref()
                        .and_then(|m| m.get(&key).cloned())
                        .unwrap_or_else(|| Err("no answer".into()))
                        .map_err(|e| anyhow::anyhow!("offset by time of {t}[{p}]: {e}"))?;
                    if found < 0 {
                        hi
                    } else {
                        found
                    }
                }
            };
            plan.push((t.clone(), *p, current, new));
        }
    }
    if execute {
        let mut offsets: CommittedOffsets = BTreeMap::new();
        for (t, p, _, new) in &plan {
            offsets.entry(t.clone()).or_default().insert(*p, *new);
        }
        client.commit_offsets(group, &offsets).await?;
    }
    match output {
        OutputFormat::Json => print_json(&json!({
            "group": group,
            "executed": execute,
            "partitions": plan.iter().map(|(t, p, c, n)| json!({
                "topic": t, "partition": p, "current_offset": c, "new_offset": n,
            })).collect::<Vec<_>>(),
        }))?,
        OutputFormat::Table => {
            let mut table = Table::new(&[
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "NEW-OFFSET",
            ]);
            for (t, p, c, n) in &plan {
                table.row(vec![
                    group.to_string(),
                    t.clone(),
                    p.to_string(),
                    c.map_or("-".into(), |c| c.to_string()),
                    n.to_string(),
                ]);
            }
            print(&table.render())?;
        }
    }
    if !execute {
        eprintln!(
            "% Dry run: no offsets were changed; add --execute to commit the NEW-OFFSET column."
        );
    }
    Ok(())
}

async fn delete(client: &Client, output: OutputFormat, groups: &[String]) -> anyhow::Result<()> {
    let results = client.delete_groups(groups).await?;
    let mut first_error = None;
    let mut json_out = Vec::new();
    let mut text = String::new();
    for (g, r) in groups.iter().zip(results) {
        match r {
            Ok(()) => {
                json_out.push(json!({"group": g, "deleted": true}));
                text.push_str(&format!("Deleted group {g}.\n"));
            }
            Err(e) => {
                let e: anyhow::Error = match e.code() {
                    Some(KafkaCode::GROUP_ID_NOT_FOUND) => {
                        anyhow::anyhow!("group {g} does not exist (GROUP_ID_NOT_FOUND)")
                    }
                    Some(68) => anyhow::anyhow!(
                        "group {g} is not empty (NON_EMPTY_GROUP): stop its consumers first"
                    ),
                    _ => e.into(),
                };
                json_out.push(json!({"group": g, "deleted": false, "error": format!("{e:#}")}));
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
    fn topic_specs() {
        assert_eq!(parse_topic_spec("t").unwrap(), ("t".to_string(), None));
        assert_eq!(
            parse_topic_spec("t:0,2").unwrap(),
            ("t".to_string(), Some(vec![0, 2]))
        );
        assert!(parse_topic_spec("t:x").is_err());
    }
}
