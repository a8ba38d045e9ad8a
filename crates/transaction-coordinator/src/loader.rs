//! Loading a partition of `__transaction_state`: every record from the log start to the end,
//! the last record of a transactional id winning and a tombstone removing it, as Kafka's
//! `TransactionStateManager` loads a partition it starts to lead.

use std::collections::HashMap;

use bytes::Bytes;
use proto_kafka::records::{Record, RecordBatchDecoder};
use tracing::{info, warn};

use crate::ports::{ReadError, TransactionLog};
use crate::records;
use crate::state::{TxnMetadata, TxnState};
use crate::TRANSACTION_STATE_TOPIC;

/// Bytes read per step when loading.
const LOAD_READ_BYTES: usize = 16 * 1024 * 1024;
/// A record batch's fixed header.
const BATCH_HEADER_BYTES: usize = 61;

/// The transactional ids recorded in partition `p`. A partition the log does not host here
/// has none. Ids left in PrepareCommit / PrepareAbort still owe their markers: the caller
/// sends them ([`TxnMetadata::pending_markers`]) and completes them.
pub fn load_transactions(
    log: &dyn TransactionLog,
    p: i32,
) -> Result<HashMap<String, TxnMetadata>, ReadError> {
    let name = format!("{TRANSACTION_STATE_TOPIC}-{p}");
    let Some(range) = log.offsets(p) else {
        return Ok(HashMap::new());
    };
    let (start, end) = range?;
    let mut out: HashMap<String, TxnMetadata> = HashMap::new();
    let mut records_read = 0u64;
    let mut next = start;
    while next < end {
        let bytes = log.read(p, next, LOAD_READ_BYTES, end)?;
        if bytes.is_empty() {
            break;
        }
        let before = next;
        for_each_batch(&bytes, &name, |batch_end, recs| {
            for r in recs.iter().filter(|r| r.offset >= next) {
                records_read += 1;
                apply_record(&mut out, &name, r);
            }
            next = next.max(batch_end);
        });
        if next <= before {
            warn!(partition = %name, offset = next, "cannot read past this offset; the rest of the partition is ignored");
            break;
        }
    }
    out.retain(|_, m| m.state != TxnState::Dead);
    info!(partition = %name, transactional_ids = out.len(), records = records_read, "transactions loaded");
    Ok(out)
}

fn apply_record(out: &mut HashMap<String, TxnMetadata>, name: &str, r: &Record) {
    let Some(key) = r.key.clone() else {
        return;
    };
    let id = match records::decode_key(key) {
        Ok(id) => id,
        Err(e) => {
            warn!(partition = %name, offset = r.offset, error = %e, "skipping an unreadable key");
            return;
        }
    };
    match r.value.clone().map(records::decode_value) {
        None => {
            out.remove(&id);
        }
        Some(Ok(v)) => {
            out.insert(id.clone(), TxnMetadata::from_value(&id, &v));
        }
        Some(Err(e)) => {
            warn!(partition = %name, offset = r.offset, error = %e, "skipping an unreadable transaction record")
        }
    }
}

/// Walks whole batches in `bytes`, giving each one's end offset (from the header, so a batch
/// emptied by compaction still advances) and its decoded records.
fn for_each_batch(bytes: &Bytes, partition: &str, mut f: impl FnMut(i64, Vec<Record>)) {
    let mut pos = 0usize;
    while bytes.len() - pos >= BATCH_HEADER_BYTES {
        let b = &bytes[pos..];
        let base = i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let last_delta = i32::from_be_bytes([b[23], b[24], b[25], b[26]]);
        let Some(total) = usize::try_from(len).ok().and_then(|l| l.checked_add(12)) else {
            return;
        };
        if total > b.len() || total < BATCH_HEADER_BYTES {
            return;
        }
        let mut one = bytes.slice(pos..pos + total);
        let recs = match RecordBatchDecoder::decode(&mut one) {
            Ok(set) => set.records,
            Err(e) => {
                warn!(partition = %partition, offset = base, error = %e, "skipping an undecodable batch");
                Vec::new()
            }
        };
        f(
            base.saturating_add(i64::from(last_delta)).saturating_add(1),
            recs,
        );
        pos += total;
    }
}
