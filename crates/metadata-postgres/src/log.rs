//! [`PgMetadataLog`]: the metadata log as a table, one row per record, offsets dense from 0.
//!
//! An append is one transaction: (for a controller) the lease row is read `FOR SHARE` and
//! must still name this controller's epoch, unexpired; the log's end must be the expected
//! offset; the rows go in; `pg_notify` tells the followers. Two writers that both saw the
//! same end race on the primary key: the loser's insert fails with a unique violation,
//! answered as a conflict. Nothing is visible to readers before the commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient};
use strom_metadata::log_client::{MetadataLogClient, MAX_READ_RECORDS};
use strom_metadata::metadata_log::MetadataLogError;
use strom_metadata::records::MetadataRecord;

use crate::conn::{col, Conn, Failure};
use crate::error::PgMetadataError;
use crate::lease::ControllerLease;

/// The NOTIFY channel of committed appends; the payload is the new end offset.
pub const NOTIFY_CHANNEL: &str = "strom_metadata_log";
/// How often a waiter looks at `close` while no notification comes.
const WAIT_SLICE: Duration = Duration::from_millis(200);

struct Shared {
    writer: Conn,
    listener: Conn,
    closed: AtomicBool,
}

/// The metadata log in PostgreSQL. Cheap to clone; clones share the two connections (one
/// for appends and reads, one that LISTENs for [`MetadataLogClient::wait_for_more`]).
#[derive(Clone)]
pub struct PgMetadataLog {
    shared: Arc<Shared>,
    fence: Option<ControllerLease>,
}

impl PgMetadataLog {
    pub(crate) fn new(writer: Conn, listener: Conn) -> PgMetadataLog {
        PgMetadataLog {
            shared: Arc::new(Shared {
                writer,
                listener,
                closed: AtomicBool::new(false),
            }),
            fence: None,
        }
    }

    /// The same log for the controller holding `lease`: each append checks, in its own
    /// transaction, that `lease` is still the current unexpired lease, so a controller that
    /// lost it cannot write even at the right offset ([`PgMetadataError::Fenced`]).
    pub fn for_controller(&self, lease: &ControllerLease) -> PgMetadataLog {
        PgMetadataLog {
            shared: self.shared.clone(),
            fence: Some(lease.clone()),
        }
    }

    /// The lease this handle's appends are fenced by, if any.
    pub fn fence(&self) -> Option<&ControllerLease> {
        self.fence.as_ref()
    }

    fn check_open(&self) -> Result<(), PgMetadataError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(PgMetadataError::Closed);
        }
        Ok(())
    }

    pub fn end(&self) -> Result<i64, PgMetadataError> {
        self.check_open()?;
        self.shared.writer.run(end_on)
    }

    pub fn append_records(
        &self,
        expected_offset: i64,
        records: &[MetadataRecord],
        timestamp_ms: i64,
    ) -> Result<i64, PgMetadataError> {
        self.check_open()?;
        let mut texts = Vec::with_capacity(records.len());
        for r in records {
            texts.push(
                serde_json::to_string(r).map_err(|e| PgMetadataError::Corrupt {
                    offset: expected_offset,
                    reason: format!("cannot encode a record: {e}"),
                })?,
            );
        }
        let fence = self.fence.clone();
        self.shared
            .writer
            .run(|c| append_on(c, fence.as_ref(), expected_offset, &texts, timestamp_ms))
    }

    pub fn read_records(
        &self,
        from_offset: i64,
        max_records: usize,
    ) -> Result<Vec<(i64, MetadataRecord)>, PgMetadataError> {
        self.check_open()?;
        let from = from_offset.max(0);
        let limit = i64::try_from(max_records.min(MAX_READ_RECORDS)).unwrap_or(0);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = self.shared.writer.run(|c| {
            let rows = c.query(
                r#"SELECT "offset", record::text FROM metadata_log
                   WHERE "offset" >= $1 ORDER BY "offset" LIMIT $2"#,
                &[&from, &limit],
            )?;
            rows.iter()
                .map(|row| Ok((col::<i64>(row, 0)?, col::<String>(row, 1)?)))
                .collect::<Result<Vec<_>, Failure>>()
        })?;
        let mut out = Vec::with_capacity(rows.len());
        let mut next = from;
        for (offset, text) in rows {
            if offset != next {
                return Err(PgMetadataError::Corrupt {
                    offset: next,
                    reason: format!("the log has a gap: the next record is at {offset}"),
                });
            }
            let record = serde_json::from_str(&text).map_err(|e| PgMetadataError::Corrupt {
                offset,
                reason: e.to_string(),
            })?;
            out.push((offset, record));
            next = offset + 1;
        }
        Ok(out)
    }

    /// LISTEN first, then the catch-up read, then wait: a record committed after the LISTEN
    /// is notified on this connection even if it lands before the wait starts, so none is
    /// missed. The listener connection stays subscribed between calls; a stale
    /// notification only costs one more read.
    pub fn wait_for_end_past(
        &self,
        offset: i64,
        timeout: Duration,
    ) -> Result<i64, PgMetadataError> {
        self.wait_inner(offset, timeout, &|| {})
    }

    pub(crate) fn wait_inner(
        &self,
        offset: i64,
        timeout: Duration,
        after_catch_up: &dyn Fn(),
    ) -> Result<i64, PgMetadataError> {
        self.check_open()?;
        // A timeout too long to add is no deadline at all.
        let deadline = Instant::now().checked_add(timeout);
        let listener = &self.shared.listener;
        let Some(mut guard) = listener.try_lock() else {
            return self.poll_for_end_past(offset, deadline);
        };
        let mut end = listener.run_locked(&mut guard, |c, fresh| {
            if fresh {
                c.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))?;
            }
            end_on(c)
        })?;
        after_catch_up();
        loop {
            if end > offset {
                return Ok(end);
            }
            if let Err(e) = self.check_open() {
                *guard = None;
                return Err(e);
            }
            let slice = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(end);
                    }
                    (d - now).min(WAIT_SLICE)
                }
                None => WAIT_SLICE,
            };
            end = listener.run_locked(&mut guard, |c, fresh| {
                if fresh {
                    // Reconnected mid-wait: subscribe again before reading, as above.
                    c.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))?;
                    return end_on(c);
                }
                let notified = {
                    let mut n = c.notifications();
                    let mut it = n.timeout_iter(slice);
                    it.next()?.is_some()
                };
                if notified || c.is_closed() {
                    // Drain what else queued up, then read the end once for all of them.
                    {
                        let mut n = c.notifications();
                        let mut it = n.iter();
                        while it.next()?.is_some() {}
                    }
                    end_on(c)
                } else {
                    Ok(end)
                }
            })?;
        }
    }

    /// A second waiter on the same handle, while the first holds the listener: it reads the
    /// end every [`WAIT_SLICE`] instead, so its own deadline holds.
    fn poll_for_end_past(
        &self,
        offset: i64,
        deadline: Option<Instant>,
    ) -> Result<i64, PgMetadataError> {
        loop {
            let end = self.end()?;
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if now >= d => return Ok(end),
                Some(d) => (d - now).min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            if end > offset {
                return Ok(end);
            }
            std::thread::sleep(slice);
        }
    }

    /// Closes the log: later calls fail with [`PgMetadataError::Closed`] (a waiter within a
    /// fraction of a second), and the connections are dropped.
    pub fn close_log(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.writer.disconnect();
        self.shared.listener.try_disconnect();
    }
}

fn end_on(c: &mut impl GenericClient) -> Result<i64, Failure> {
    let row = c.query_one(
        r#"SELECT COALESCE(MAX("offset") + 1, 0) FROM metadata_log"#,
        &[],
    )?;
    col(&row, 0)
}

fn append_on(
    c: &mut Client,
    fence: Option<&ControllerLease>,
    expected_offset: i64,
    texts: &[String],
    timestamp_ms: i64,
) -> Result<i64, Failure> {
    let mut tx = c.transaction()?;
    if let Some(lease) = fence {
        // FOR SHARE: the lease cannot change hands until this append commits or aborts.
        let row = tx.query_one(
            "SELECT holder_node_id, epoch, expires_at > clock_timestamp()
               FROM controller_lease WHERE id = 1 FOR SHARE",
            &[],
        )?;
        let holder: Option<i32> = col(&row, 0)?;
        let epoch: i64 = col(&row, 1)?;
        let live: bool = col(&row, 2)?;
        let reason = if epoch != lease.epoch {
            Some(format!("the lease is at epoch {epoch}"))
        } else if holder != Some(lease.node_id) {
            Some("the lease was released".to_string())
        } else if !live {
            Some("the lease expired".to_string())
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(PgMetadataError::Fenced {
                epoch: lease.epoch,
                reason,
            }
            .into());
        }
    }
    let end = end_on(&mut tx)?;
    if end != expected_offset {
        return Err(PgMetadataError::Conflict {
            expected: expected_offset,
            end,
        }
        .into());
    }
    if texts.is_empty() {
        return Ok(end);
    }
    let count = i64::try_from(texts.len()).unwrap_or(i64::MAX);
    let epoch = fence.map(|l| l.epoch);
    let inserted = tx.execute(
        r#"INSERT INTO metadata_log ("offset", record, timestamp_ms, controller_epoch)
           SELECT $1 + t.ord - 1, t.r::json, $3, $4
             FROM unnest($2::text[]) WITH ORDINALITY AS t(r, ord)"#,
        &[&expected_offset, &texts, &timestamp_ms, &epoch],
    );
    if let Err(e) = inserted {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            drop(tx);
            let end = end_on(c)?;
            return Err(PgMetadataError::Conflict {
                expected: expected_offset,
                end,
            }
            .into());
        }
        return Err(e.into());
    }
    let new_end = expected_offset + count;
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&NOTIFY_CHANNEL, &new_end.to_string()],
    )?;
    tx.commit()?;
    Ok(expected_offset)
}

impl MetadataLogClient for PgMetadataLog {
    fn end_offset(&self) -> Result<i64, MetadataLogError> {
        Ok(self.end()?)
    }

    fn append(
        &self,
        expected_offset: i64,
        records: &[MetadataRecord],
        timestamp_ms: i64,
    ) -> Result<i64, MetadataLogError> {
        Ok(self.append_records(expected_offset, records, timestamp_ms)?)
    }

    fn read(
        &self,
        from_offset: i64,
        max_records: usize,
    ) -> Result<Vec<(i64, MetadataRecord)>, MetadataLogError> {
        Ok(self.read_records(from_offset, max_records)?)
    }

    fn wait_for_more(&self, offset: i64, timeout: Duration) -> Result<i64, MetadataLogError> {
        Ok(self.wait_for_end_past(offset, timeout)?)
    }

    fn close(&self) -> Result<(), MetadataLogError> {
        self.close_log();
        Ok(())
    }
}
