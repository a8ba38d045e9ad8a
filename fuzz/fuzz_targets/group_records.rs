//! The `__consumer_offsets` record decoders, classic and consumer-protocol groups: the first
//! byte chooses the value decoder, then `u16 key length`, key, value. A value that decodes
//! must decode the same after being encoded again.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strom_broker::group::{consumer_records as c, records as r};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (key, value) = if rest.len() >= 2 {
        let n = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        (&rest[2..2 + n], &rest[2 + n..])
    } else {
        (rest, &[][..])
    };
    let _ = r::decode_key(Bytes::copy_from_slice(key));
    let value = Bytes::copy_from_slice(value);
    match selector % 6 {
        0 => {
            if let Ok(v) = r::decode_offset_value(value) {
                if let Ok(again) = r::encode_offset_value(&v) {
                    assert_eq!(r::decode_offset_value(again).ok(), Some(v));
                }
            }
        }
        1 => {
            if let Ok(v) = r::decode_group_value(value) {
                if let Ok(again) = r::encode_group_value(&v) {
                    assert_eq!(r::decode_group_value(again).ok(), Some(v));
                }
            }
        }
        2 => {
            if let Ok(v) = c::decode_epoch_value(value) {
                assert_eq!(c::decode_epoch_value(c::epoch_value(v)).ok(), Some(v));
            }
        }
        3 => {
            if let Ok(v) = c::decode_member_metadata_value(value) {
                let again = c::member_metadata_value(&v);
                assert_eq!(c::decode_member_metadata_value(again).ok(), Some(v));
            }
        }
        4 => {
            if let Ok(v) = c::decode_target_member_value(value) {
                let again = c::target_member_value(&v);
                assert_eq!(c::decode_target_member_value(again).ok(), Some(v));
            }
        }
        _ => {
            if let Ok(v) = c::decode_current_assignment_value(value) {
                let again = c::current_assignment_value(&v);
                assert_eq!(c::decode_current_assignment_value(again).ok(), Some(v));
            }
        }
    }
});
