//! The metadata records as start-up replays them: first byte 0, the rest a metadata log
//! region (record batches, then one JSON record per record value); otherwise lines of JSON
//! records. Each is applied in order to an image holding one topic. A record that parses
//! must survive a round trip through its encoding.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use proto_kafka::records::RecordBatchDecoder;
use strom_broker::fuzzing::seeds;
use strom_broker::metadata::{MetadataImage, MetadataRecord};

fn apply(image: &mut MetadataImage, offset: i64, value: &[u8]) {
    let Ok(record) = serde_json::from_slice::<MetadataRecord>(value) else {
        return;
    };
    let json = serde_json::to_vec(&record).expect("a parsed record encodes");
    let again: MetadataRecord = serde_json::from_slice(&json).expect("an encoded record parses");
    assert_eq!(again, record, "metadata record round trip");
    let _ = image.apply(offset, &record);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut image = MetadataImage::empty();
    for (i, r) in seeds::seed_image_records().iter().enumerate() {
        image.apply(i as i64, r).expect("the seed image applies");
    }
    let mut offset = 100;
    if mode == 0 {
        let mut bytes = Bytes::copy_from_slice(rest);
        let Ok(sets) = RecordBatchDecoder::decode_all(&mut bytes) else {
            return;
        };
        for set in sets {
            for record in set.records {
                apply(&mut image, record.offset, &record.value.unwrap_or_default());
            }
        }
    } else {
        for line in rest.split(|b| *b == b'\n') {
            apply(&mut image, offset, line);
            offset += 1;
        }
    }
    let _ = image.partition_count();
});
