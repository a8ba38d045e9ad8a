//! Live streams of a topic's records: `GET /ws/v1/topics/{t}/records` as a
//! WebSocket (one JSON text message per record) or, with `Accept:
//! text/event-stream`, as Server-Sent Events.
//!
//! Each stream has its own fetch task feeding a bounded channel: when the
//! client reads slowly, the socket's send buffer fills, the channel fills,
//! and the task stops fetching until there is room. A slow client so slows
//! only its own fetching, and holds at most one fetch response plus the
//! channel's records in memory.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use strom_client::{Client, FetchTarget, KafkaCode, OffsetSpec, TopicMeta};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::embedded::{self, Format};
use crate::error::{RestError, RestResult};
use crate::v2::topic_meta;
use crate::Gateway;

/// Records buffered per stream between its fetch task and its socket.
const STREAM_BUFFER_RECORDS: usize = 256;
/// Bytes one fetch of a stream asks for.
const STREAM_FETCH_BYTES: i32 = 1024 * 1024;
const STREAM_FETCH_WAIT_MS: i32 = 500;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/ws/v1/topics/{topic}/records", get(stream))
        .route("/ws/v1/topics/{topic}/produce", get(produce_route))
}

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    partitions: Option<String>,
    /// Start from this group's committed offsets (where it has some), and
    /// commit for it what the client acknowledges.
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

/// Where a stream starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    Spec(OffsetSpec),
    Offset(i64),
}

/// `earliest`, `latest` (the default), an offset, or a date-time
/// (`YYYY-MM-DDTHH:MM:SS[.sss](Z|±HH:MM)`, the first record at or after it).
pub fn parse_from(s: &str) -> Result<From, String> {
    let s = s.trim();
    match s {
        "earliest" | "beginning" => return Ok(From::Spec(OffsetSpec::Earliest)),
        "latest" | "end" => return Ok(From::Spec(OffsetSpec::Latest)),
        _ => {}
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(From::Offset)
            .map_err(|_| format!("from={s}: offset out of range"));
    }
    parse_datetime(s)
        .map(|ms| From::Spec(OffsetSpec::Timestamp(ms)))
        .ok_or_else(|| {
            format!(
                "from={s:?}: expected earliest, latest, an offset, or a date-time such as 2026-01-31T12:00:00Z"
            )
        })
}

fn digits(s: &str, lo: i64, hi: i64) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = s.parse().ok()?;
    (lo..=hi).contains(&v).then_some(v)
}

/// Milliseconds since the epoch of an RFC 3339 date-time.
fn parse_datetime(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let (y, m, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() {
        return None;
    }
    let (y, m) = (digits(y, 1970, 9999)?, digits(m, 1, 12)?);
    let day = digits(day, 1, 31)?;
    let (clock, offset_min) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = time.rfind(['+', '-'])?;
        let (c, zone) = time.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = zone[1..].split_once(':')?;
        (c, sign * (digits(zh, 0, 23)? * 60 + digits(zm, 0, 59)?))
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, b)) => (a, b),
        None => (clock, ""),
    };
    let mut t = hms.split(':');
    let (h, mi, sec) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some() {
        return None;
    }
    let (h, mi, sec) = (digits(h, 0, 23)?, digits(mi, 0, 59)?, digits(sec, 0, 60)?);
    let ms = if frac.is_empty() {
        0
    } else {
        let f: String = frac.chars().chain("000".chars()).take(3).collect();
        digits(&f, 0, 999)?
    };
    // Days since the epoch of a proleptic Gregorian date.
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec * 1000 + ms)
}

struct Tail {
    client: Arc<Client>,
    meta: TopicMeta,
    format: Format,
    positions: BTreeMap<i32, i64>,
    /// Held while the stream lives: the gateway's limit on streams.
    _permit: OwnedSemaphorePermit,
    /// And the caller's (gateway.max.streams.per.principal).
    _principal_slot: Option<crate::auth::Held>,
}

async fn stream(
    State(gw): State<Arc<Gateway>>,
    Path(topic): Path<String>,
    Query(q): Query<StreamQuery>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    request: Request,
) -> RestResult<Response> {
    let (mut parts, _) = request.into_parts();
    let websocket = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let sse = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !websocket && !sse {
        return Err(RestError::status(
            StatusCode::NOT_ACCEPTABLE,
            "a record stream is a WebSocket (Upgrade: websocket) or Server-Sent Events (Accept: text/event-stream)",
        ));
    }
    if websocket {
        crate::cors::check_websocket_origin(&gw, &parts.headers)?;
    }
    let format = match q.format.as_deref() {
        None => Format::Json,
        Some(f) => Format::parse(f)
            .ok_or_else(|| RestError::bad_request(format!("format={f:?}: use json or binary")))?,
    };
    let from = match q.from.as_deref() {
        None => From::Spec(OffsetSpec::Latest),
        Some(s) => parse_from(s).map_err(RestError::bad_request)?,
    };
    let permit = gw.streams.clone().try_acquire_owned().map_err(|_| {
        RestError::status(
            StatusCode::TOO_MANY_REQUESTS,
            "the gateway serves as many record streams as its limit",
        )
    })?;
    let principal_slot = crate::auth::stream_slot(&gw, caller.as_deref())?;
    let meta = topic_meta(&gw, &topic).await?;
    let partitions: Vec<i32> = match q.partitions.as_deref() {
        None | Some("") => meta.partitions.iter().map(|p| p.partition).collect(),
        Some(list) => {
            let mut out = Vec::new();
            for item in list.split(',') {
                let p = item
                    .trim()
                    .parse::<i32>()
                    .ok()
                    .filter(|p| meta.partition(*p).is_some());
                match p {
                    Some(p) if !out.contains(&p) => out.push(p),
                    Some(_) => {}
                    None => {
                        return Err(RestError::partition_not_found(
                            &topic,
                            item.trim().parse().unwrap_or(-1),
                        ))
                    }
                }
            }
            out
        }
    };
    let client = gw.client().await?;
    let mut positions = start_positions(&client, &topic, &partitions, from).await?;
    if let Some(g) = &q.group {
        if g.is_empty() {
            return Err(RestError::bad_request("group= must name a group"));
        }
        let wanted = vec![(topic.clone(), partitions.clone())];
        let committed = client
            .fetch_committed(g, Some(&wanted))
            .await
            .map_err(|e| RestError::kafka(&e, None))?;
        for (p, o) in committed.get(&topic).into_iter().flatten() {
            if *o >= 0 && positions.contains_key(p) {
                positions.insert(*p, *o);
            }
        }
    }
    if sse {
        // An EventSource reconnecting after a drop names the last event it
        // got: carry on after it rather than at `from` again.
        if let Some(last) = parts.headers.get("last-event-id") {
            let last = last
                .to_str()
                .ok()
                .and_then(parse_event_id)
                .ok_or_else(|| {
                    RestError::bad_request(
                        "Last-Event-ID: expected PARTITION:OFFSET[,PARTITION:OFFSET...] as this stream's events name them",
                    )
                })?;
            for (p, o) in last {
                if let Some(pos) = positions.get_mut(&p) {
                    *pos = o.saturating_add(1);
                }
            }
        }
    }
    let acks = q.group.clone().map(|g| Acks {
        client: client.clone(),
        group: g,
        topic: topic.clone(),
        acked: BTreeMap::new(),
    });
    let tail = Tail {
        client,
        meta,
        format,
        positions,
        _permit: permit,
        _principal_slot: principal_slot,
    };
    let (tx, rx) = mpsc::channel::<Value>(STREAM_BUFFER_RECORDS);
    if websocket {
        let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| RestError::bad_request(format!("WebSocket upgrade: {e}")))?;
        let ping = keepalive(&gw);
        Ok(ws.on_upgrade(move |socket| async move {
            let fetcher = tokio::spawn(run_tail(tail, tx));
            serve_socket(socket, rx, ping, acks).await;
            fetcher.abort();
        }))
    } else {
        // The last offset delivered per partition (one before the start
        // where none was yet): each event's id, so that a reconnecting
        // EventSource resumes every partition where it was.
        let delivered: BTreeMap<i32, i64> = tail
            .positions
            .iter()
            .map(|(p, o)| (*p, o.saturating_sub(1)))
            .collect();
        let fetcher = tokio::spawn(run_tail(tail, tx));
        let events = futures_util::stream::unfold(
            (rx, fetcher, delivered),
            |(mut rx, fetcher, mut delivered)| async move {
                let v = rx.recv().await?;
                let p = v["partition"]
                    .as_i64()
                    .and_then(|p| i32::try_from(p).ok())
                    .unwrap_or(-1);
                let o = v["offset"].as_i64().unwrap_or(-1);
                delivered.insert(p, o);
                let event = Event::default()
                    .event("record")
                    .id(event_id(&delivered, p, o))
                    .data(v.to_string());
                Some((Ok::<Event, Infallible>(event), (rx, fetcher, delivered)))
            },
        );
        Ok(Sse::new(events)
            .keep_alive(KeepAlive::new().interval(keepalive(&gw)))
            .into_response())
    }
}

/// Streams of more partitions than this name only the record's own
/// partition in their event ids, which stay short; a reconnect then resumes
/// that partition, the others at `from`.
const EVENT_ID_MAX_PARTITIONS: usize = 100;

/// `P:O,P:O,...`: the last offset delivered on each partition of the stream.
fn event_id(delivered: &BTreeMap<i32, i64>, partition: i32, offset: i64) -> String {
    if delivered.len() > EVENT_ID_MAX_PARTITIONS {
        return format!("{partition}:{offset}");
    }
    let mut id = String::with_capacity(delivered.len() * 12);
    for (i, (p, o)) in delivered.iter().enumerate() {
        if i > 0 {
            id.push(',');
        }
        id.push_str(&format!("{p}:{o}"));
    }
    id
}

/// An event id as [`event_id`] writes it; `None` when it is not one.
fn parse_event_id(s: &str) -> Option<Vec<(i32, i64)>> {
    let mut out = Vec::new();
    for pair in s.split(',') {
        let (p, o) = pair.trim().split_once(':')?;
        let (p, o): (i32, i64) = (p.parse().ok()?, o.parse().ok()?);
        if p < 0 || o < -1 || out.len() >= EVENT_ID_MAX_PARTITIONS {
            return None;
        }
        out.push((p, o));
    }
    Some(out)
}

async fn start_positions(
    client: &Client,
    topic: &str,
    partitions: &[i32],
    from: From,
) -> RestResult<BTreeMap<i32, i64>> {
    let mut out = BTreeMap::new();
    let (spec, fallback) = match from {
        From::Offset(o) => {
            for p in partitions {
                out.insert(*p, o);
            }
            return Ok(out);
        }
        From::Spec(s @ OffsetSpec::Timestamp(_)) => (s, true),
        From::Spec(s) => (s, false),
    };
    let listed = client
        .list_offsets(topic, partitions, spec)
        .await
        .map_err(|e| RestError::kafka(&e, Some(topic)))?;
    let mut past_the_end = Vec::new();
    for (p, r) in listed {
        match r {
            Ok(o) if o.offset >= 0 => {
                out.insert(p, o.offset);
            }
            // No record at or after the time: start at the end.
            Ok(_) if fallback => past_the_end.push(p),
            Ok(_) => {
                out.insert(p, 0);
            }
            Err(e) => return Err(RestError::kafka(&e, Some(topic))),
        }
    }
    if !past_the_end.is_empty() {
        let listed = client
            .list_offsets(topic, &past_the_end, OffsetSpec::Latest)
            .await
            .map_err(|e| RestError::kafka(&e, Some(topic)))?;
        for (p, r) in listed {
            let o = r.map_err(|e| RestError::kafka(&e, Some(topic)))?;
            out.insert(p, o.offset.max(0));
        }
    }
    Ok(out)
}

fn record_json(tail: &Tail, partition: i32, r: &strom_client::Record) -> Value {
    let mut v = json!({
        "topic": tail.meta.name,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": embedded::encode_data_lenient(tail.format, &r.key),
        "value": embedded::encode_data_lenient(tail.format, &r.value),
    });
    if !r.headers.is_empty() {
        v["headers"] = embedded::encode_headers(r);
    }
    v
}

/// Fetches from the positions for as long as the receiver lives; each send
/// waits for room in the channel (the backpressure).
async fn run_tail(mut tail: Tail, tx: mpsc::Sender<Value>) {
    let topic = tail.meta.name.clone();
    loop {
        let mut by_leader: BTreeMap<i32, Vec<FetchTarget>> = BTreeMap::new();
        for (p, offset) in &tail.positions {
            let leader = tail.meta.partition(*p).map_or(-1, |m| m.leader);
            by_leader.entry(leader).or_default().push(FetchTarget {
                topic: topic.clone(),
                topic_id: tail.meta.id,
                partition: *p,
                offset: *offset,
                max_bytes: STREAM_FETCH_BYTES,
            });
        }
        let mut refresh = by_leader.contains_key(&-1);
        for (leader, targets) in by_leader {
            if leader < 0 {
                continue;
            }
            let fetched = match tail
                .client
                .fetch(leader, &targets, STREAM_FETCH_WAIT_MS, STREAM_FETCH_BYTES)
                .await
            {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(error = %e, %topic, "stream fetch failed");
                    refresh = true;
                    continue;
                }
            };
            for fp in fetched {
                if fp.error_code == KafkaCode::OFFSET_OUT_OF_RANGE {
                    // Deleted by retention (or not yet written): go to the
                    // nearest offset that exists.
                    let here = tail.positions.get(&fp.partition).copied().unwrap_or(0);
                    let to = if here < fp.log_start_offset {
                        fp.log_start_offset
                    } else {
                        fp.high_watermark
                    };
                    tail.positions.insert(fp.partition, to.max(0));
                    continue;
                }
                if fp.error_code != 0 {
                    refresh = true;
                    continue;
                }
                let mut next = None;
                for r in &fp.records {
                    if tx.send(record_json(&tail, fp.partition, r)).await.is_err() {
                        return; // the client went away
                    }
                    next = Some(r.offset + 1);
                }
                if let Some(n) = next.or(fp.next_offset) {
                    let here = tail.positions.get(&fp.partition).copied().unwrap_or(0);
                    tail.positions.insert(fp.partition, n.max(here));
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        if refresh {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(meta) = tail.client.topic_metadata(&topic, false).await {
                tail.meta = meta;
            }
        }
    }
}

/// How often a quiet stream shows it is alive (a WebSocket ping, an SSE
/// comment), well within the idle timeout that would close it.
fn keepalive(gw: &Gateway) -> Duration {
    (gw.config.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(15))
}

/// Acknowledgements of a stream with `group=`: `{"ack": {"partition": P,
/// "offset": O}}` from the client commits O + 1 for the group (outside any
/// generation, as a consumer with a manual assignment commits), at most
/// once a second and when the socket closes.
struct Acks {
    client: Arc<Client>,
    group: String,
    topic: String,
    acked: BTreeMap<i32, i64>,
}

impl Acks {
    fn note(&mut self, text: &str) -> Result<(), String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let ack = v
            .get("ack")
            .ok_or("expected {\"ack\": {\"partition\": P, \"offset\": O}}")?;
        let p = ack["partition"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok());
        let o = ack["offset"].as_i64().filter(|o| *o >= 0);
        let (Some(p), Some(o)) = (p, o) else {
            return Err("ack needs a partition and a non-negative offset".into());
        };
        let next = self.acked.entry(p).or_insert(0);
        *next = (*next).max(o + 1);
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), String> {
        if self.acked.is_empty() {
            return Ok(());
        }
        let mut offsets: strom_client::CommittedOffsets = BTreeMap::new();
        offsets.insert(self.topic.clone(), std::mem::take(&mut self.acked));
        self.client
            .commit_offsets(&self.group, &offsets)
            .await
            .map_err(|e| e.to_string())
    }
}

async fn serve_socket(
    socket: WebSocket,
    mut rx: mpsc::Receiver<Value>,
    ping: Duration,
    mut acks: Option<Acks>,
) {
    let (mut sink, mut incoming) = socket.split();
    let mut pings = tokio::time::interval(ping);
    pings.tick().await;
    let mut commits = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = pings.tick() => {
                if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    break;
                }
            }
            _ = commits.tick(), if acks.is_some() => {
                if let Some(a) = acks.as_mut() {
                    if let Err(e) = a.commit().await {
                        let msg = json!({"error_code": 500, "message": format!("commit failed: {e}")});
                        let _ = sink.send(Message::Text(msg.to_string().into())).await;
                    }
                }
            }
            record = rx.recv() => {
                let Some(v) = record else { break };
                if sink.send(Message::Text(v.to_string().into())).await.is_err() {
                    break;
                }
            }
            msg = incoming.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(t))) => {
                    let noted = match acks.as_mut() {
                        Some(a) => a.note(&t),
                        None => Err("acknowledgements need group= on the stream".into()),
                    };
                    if let Err(e) = noted {
                        let msg = json!({"error_code": 400, "message": e});
                        if sink.send(Message::Text(msg.to_string().into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    }
    if let Some(a) = acks.as_mut() {
        if let Err(e) = a.commit().await {
            tracing::debug!(error = %e, "commit of a closing stream failed");
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_name_every_partition_and_parse_back() {
        let mut delivered: BTreeMap<i32, i64> = [(0, 4), (1, -1), (2, 9)].into_iter().collect();
        let id = event_id(&delivered, 0, 4);
        assert_eq!(id, "0:4,1:-1,2:9");
        assert_eq!(parse_event_id(&id), Some(vec![(0, 4), (1, -1), (2, 9)]));
        assert_eq!(parse_event_id("0:2"), Some(vec![(0, 2)]));
        for bad in ["", "0", "0:x", "-1:3", "0:-2", "0:1,", "a:b"] {
            assert_eq!(parse_event_id(bad), None, "{bad}");
        }
        let too_many = vec!["0:1"; EVENT_ID_MAX_PARTITIONS + 1].join(",");
        assert_eq!(parse_event_id(&too_many), None);
        delivered.extend((3..=EVENT_ID_MAX_PARTITIONS as i32).map(|p| (p, 0)));
        assert_eq!(event_id(&delivered, 2, 9), "2:9");
    }

    #[test]
    fn from_takes_names_offsets_and_date_times() {
        assert_eq!(parse_from("earliest"), Ok(From::Spec(OffsetSpec::Earliest)));
        assert_eq!(parse_from("latest"), Ok(From::Spec(OffsetSpec::Latest)));
        assert_eq!(parse_from("42"), Ok(From::Offset(42)));
        assert_eq!(
            parse_from("1970-01-01T00:00:01Z"),
            Ok(From::Spec(OffsetSpec::Timestamp(1000)))
        );
        assert_eq!(
            parse_from("2026-12-01T10:00:00.250+01:00"),
            Ok(From::Spec(OffsetSpec::Timestamp(1_796_115_600_250)))
        );
        assert_eq!(
            parse_from("2000-03-01T00:00:00Z"),
            Ok(From::Spec(OffsetSpec::Timestamp(951_868_800_000)))
        );
        for bad in [
            "",
            "-1",
            "soon",
            "2026-13-01T00:00:00Z",
            "2026-01-01T25:00:00Z",
            "99999999999999999999",
        ] {
            assert!(parse_from(bad).is_err(), "{bad}");
        }
    }
}

/// Produce requests a socket may have in flight before it stops reading.
const PRODUCE_IN_FLIGHT: usize = 1024;

#[derive(Deserialize)]
struct ProduceQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `GET /ws/v1/topics/{t}/produce`: a WebSocket whose text messages are
/// records (`{"key", "value", "partition", "headers", "timestamp"}` as in
/// REST v2, in the `format` of the query), each answered in order with
/// `{"partition", "offset"}` or `{"error_code", "message"}`.
async fn produce_route(
    State(gw): State<Arc<Gateway>>,
    Path(topic): Path<String>,
    Query(q): Query<ProduceQuery>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    request: Request,
) -> RestResult<Response> {
    let (mut parts, _) = request.into_parts();
    let format = match q.format.as_deref() {
        None => Format::Json,
        Some(f) => Format::parse(f)
            .ok_or_else(|| RestError::bad_request(format!("format={f:?}: use json or binary")))?,
    };
    crate::cors::check_websocket_origin(&gw, &parts.headers)?;
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| {
            RestError::status(
                StatusCode::UPGRADE_REQUIRED,
                format!("this path is a WebSocket: {e}"),
            )
        })?;
    let permit = gw.streams.clone().try_acquire_owned().map_err(|_| {
        RestError::status(
            StatusCode::TOO_MANY_REQUESTS,
            "the gateway serves as many sockets as its limit",
        )
    })?;
    let principal_slot = crate::auth::stream_slot(&gw, caller.as_deref())?;
    crate::v2::produce_meta(&gw, &topic, std::iter::empty()).await?;
    let ping = keepalive(&gw);
    Ok(ws.on_upgrade(move |socket| async move {
        produce_socket(gw, topic, format, socket, ping).await;
        drop(permit);
        drop(principal_slot);
    }))
}

fn failure(e: &RestError) -> Value {
    json!({"error_code": e.error_code, "message": e.message})
}

async fn produce_one(gw: Arc<Gateway>, topic: Arc<str>, format: Format, text: String) -> Value {
    let record: crate::v2::ProduceRecordIn = match crate::parse_json(text.as_bytes()) {
        Ok(crate::ObjectOnly(r)) => r,
        Err(e) => return failure(&e),
    };
    let (explicit, mut record) = match crate::v2::decode_records(format, vec![record]) {
        Ok(mut v) => match v.pop() {
            Some(r) => r,
            None => return failure(&RestError::bad_request("no record")),
        },
        Err(e) => return failure(&e),
    };
    let meta = match crate::v2::produce_meta(&gw, &topic, explicit.into_iter()).await {
        Ok(m) => m,
        Err(e) => return failure(&e),
    };
    let partitions = (meta.partitions.len() as i32).max(1);
    let partition = match (explicit, &record.key) {
        (Some(p), _) => p,
        (None, Some(k)) => strom_client::partition_for_key(k, partitions),
        (None, None) => {
            (gw.next_partition
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % partitions as usize) as i32
        }
    };
    if meta.partition(partition).is_none() {
        return failure(&RestError::partition_not_found(&topic, partition));
    }
    record.partition = Some(partition);
    let client = match gw.client().await {
        Ok(c) => c,
        Err(e) => return failure(&e),
    };
    match gw
        .batcher
        .produce(&client, &topic, partition, vec![record])
        .await
    {
        Ok(offset) => json!({"partition": partition, "offset": offset}),
        Err(e) => failure(&RestError::kafka(&e, Some(&topic))),
    }
}

async fn produce_socket(
    gw: Arc<Gateway>,
    topic: String,
    format: Format,
    socket: WebSocket,
    ping: Duration,
) {
    let topic: Arc<str> = Arc::from(topic);
    let (mut sink, mut incoming) = socket.split();
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    let mut pings = tokio::time::interval(ping);
    pings.tick().await;
    let mut reading = true;
    loop {
        tokio::select! {
            _ = pings.tick() => {
                if sink.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                    break;
                }
            }
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                let answer: Value = answer;
                if sink.send(Message::Text(answer.to_string().into())).await.is_err() {
                    break;
                }
            }
            msg = incoming.next(), if reading && in_flight.len() < PRODUCE_IN_FLIGHT => match msg {
                Some(Ok(Message::Text(t))) => {
                    in_flight.push_back(produce_one(gw.clone(), topic.clone(), format, t.to_string()));
                }
                Some(Ok(Message::Binary(b))) => {
                    let text = String::from_utf8_lossy(&b).into_owned();
                    in_flight.push_back(produce_one(gw.clone(), topic.clone(), format, text));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => reading = false,
                Some(Ok(_)) => {}
            },
        }
        if !reading && in_flight.is_empty() {
            break;
        }
    }
    let _ = sink.close().await;
}
