//! Test-only builder of Kafka v2 record batches (records encoded for real, CRC-32C computed).

#[derive(Debug, Clone)]
pub(crate) struct BatchSpec {
    pub records: i32,
    /// Overrides lastOffsetDelta (default records - 1, or 0 when empty).
    pub last_offset_delta: Option<i32>,
    pub base_timestamp: i64,
    /// Overrides maxTimestamp (default: the last record's timestamp, base + i per record).
    pub max_timestamp: Option<i64>,
    pub attributes: i16,
    pub value_size_bytes: usize,
    pub base_offset: i64,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            records: 1,
            last_offset_delta: None,
            base_timestamp: 1_000,
            max_timestamp: None,
            attributes: 0,
            value_size_bytes: 10,
            base_offset: 0,
        }
    }
}

impl BatchSpec {
    pub fn records(records: i32) -> Self {
        BatchSpec {
            records,
            ..Default::default()
        }
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub(crate) fn build_batch(spec: &BatchSpec) -> Vec<u8> {
    let mut records = Vec::new();
    for i in 0..spec.records {
        let mut body = Vec::new();
        body.push(0u8); // record attributes
        put_varint(&mut body, i64::from(i)); // timestampDelta
        put_varint(&mut body, i64::from(i)); // offsetDelta
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, spec.value_size_bytes as i64);
        body.extend((0..spec.value_size_bytes).map(|j| (i as usize + j) as u8));
        put_varint(&mut body, 0); // no headers
        put_varint(&mut records, body.len() as i64);
        records.extend(body);
    }
    let last_offset_delta = spec.last_offset_delta.unwrap_or((spec.records - 1).max(0));
    let max_timestamp = spec
        .max_timestamp
        .unwrap_or(spec.base_timestamp + i64::from((spec.records - 1).max(0)));
    let mut b = Vec::with_capacity(61 + records.len());
    b.extend(spec.base_offset.to_be_bytes());
    b.extend(((49 + records.len()) as i32).to_be_bytes());
    b.extend(0i32.to_be_bytes()); // partitionLeaderEpoch
    b.push(2); // magic
    b.extend(0u32.to_be_bytes()); // crc placeholder
    b.extend(spec.attributes.to_be_bytes());
    b.extend(last_offset_delta.to_be_bytes());
    b.extend(spec.base_timestamp.to_be_bytes());
    b.extend(max_timestamp.to_be_bytes());
    b.extend((-1i64).to_be_bytes()); // producerId
    b.extend((-1i16).to_be_bytes()); // producerEpoch
    b.extend((-1i32).to_be_bytes()); // baseSequence
    b.extend(spec.records.to_be_bytes());
    b.extend(records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch of `records` from producer `pid` (epoch, base sequence `seq`), transactional when
/// `transactional`, timestamped from `ts`.
pub(crate) fn producer_batch(
    pid: i64,
    epoch: i16,
    seq: i32,
    records: i32,
    ts: i64,
    transactional: bool,
) -> Vec<u8> {
    let mut b = build_batch(&BatchSpec {
        records,
        base_timestamp: ts,
        attributes: if transactional { 0x10 } else { 0 },
        ..BatchSpec::default()
    });
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}
