//! The transaction coordinator's `__transaction_state` records (Kafka's TransactionLogKey and
//! TransactionLogValue schemas) and strom-log's COMMIT/ABORT control batches, as a loader or
//! a recovering log reads them from disk: the first byte chooses the decoder. A value that
//! decodes must decode the same after being encoded again at the newest version.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strom_log::batch::parse_header;
use strom_log::control::decode_marker;
use strom_transaction_coordinator::records as r;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            if let Ok(id) = r::decode_key(Bytes::copy_from_slice(rest)) {
                if let Ok(again) = r::encode_key(&id) {
                    assert_eq!(r::decode_key(again).ok(), Some(id));
                }
            }
        }
        1 => {
            if let Ok(v) = r::decode_value(Bytes::copy_from_slice(rest)) {
                if let Ok(again) = r::encode_value(&v, r::value_version_for(i16::MAX)) {
                    assert_eq!(r::decode_value(again).ok(), Some(v));
                }
            }
        }
        _ => {
            if let Ok(header) = parse_header(rest, 0) {
                if header.is_control() {
                    let _ = decode_marker(&header, rest);
                }
            }
        }
    }
});
