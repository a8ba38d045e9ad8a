//! Loading a partition of `__transaction_state`: every record from the log start to the end,
//! the last record of a transactional id winning and a tombstone removing it, as Kafka's
//! `TransactionStateManager` loads a partition it starts to lead.

use std::collections::HashMap;

use proto_kafka::records::Record;
use strom_group_coordinator::loader::replay;
use tracing::{info, warn};

use crate::ports::{ReadError, TransactionLog};
use crate::records;
use crate::state::{TxnMetadata, TxnState};
use crate::TRANSACTION_STATE_TOPIC;

/// Bytes read per step when loading.
const LOAD_READ_BYTES: usize = 16 * 1024 * 1024;

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
    let records_read = replay(
        |offset| log.read(p, offset, LOAD_READ_BYTES, end),
        start,
        end,
        &name,
        |r| apply_record(&mut out, &name, r),
    )?;
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
