//! Responses whose record bytes stay in the segment files, to go from there to the socket with
//! sendfile(2), never through user space (Kafka's zero-copy fetch). Sending is the network's
//! (strom-broker's `network::zero_copy`); this is the encoding.
//!
//! The generated codecs only know byte fields held in memory, and they write each field's length
//! from its `Bytes`. So a file range is encoded as a *placeholder*: a `Bytes` of the right length
//! that points into a zeroed region nobody writes or reads. `SegmentedBuf` keeps such a field as
//! a reference of its own, and [`split`] turns the encoded buffer into [`Piece`]s, recognising
//! the placeholders by address.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use proto_kafka::protocol::buf::SegmentedBuf;

/// Bytes of a file to be sent as they are.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

/// A part of an encoded response.
#[derive(Debug, Clone)]
pub enum Piece {
    Bytes(Bytes),
    File(FileRange),
}

impl Piece {
    pub fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::File(r) => r.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The smallest zero region: large enough for common fetches, so it is rarely reallocated, and
/// above the allocator's mmap threshold (strom-broker's `memory`), so it is fresh mapped memory that
/// calloc does not clear: address space only, no resident pages.
const MIN_ZERO_REGION_BYTES: usize = 128 * 1024 * 1024;

/// The current zero region; grown (replaced) when a placeholder needs more. Placeholders hold
/// their own reference, so an old region lives until its last response is written.
static ZEROS: Mutex<Bytes> = Mutex::new(Bytes::new());

fn zero_region(min_len: usize) -> Bytes {
    let mut zeros = match ZEROS.lock() {
        Ok(z) => z,
        Err(poisoned) => poisoned.into_inner(),
    };
    if zeros.len() < min_len {
        let len = min_len
            .checked_next_power_of_two()
            .unwrap_or(min_len)
            .max(MIN_ZERO_REGION_BYTES);
        *zeros = Bytes::from(vec![0u8; len]);
    }
    zeros.clone()
}

/// The file ranges of one response being encoded, each with the placeholder that stands for it.
#[derive(Default)]
pub struct FileRanges {
    /// Placeholder address → range.
    by_address: HashMap<usize, FileRange>,
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("a file range's placeholder was not found in the encoded response")]
    MissingPlaceholder,
}

impl FileRanges {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// A `Bytes` of `range.len` bytes to put where the range's bytes belong in a message.
    /// Empty ranges need no file: they get an empty `Bytes`.
    pub fn placeholder(&mut self, range: FileRange) -> Bytes {
        if range.len == 0 {
            return Bytes::new();
        }
        // Each placeholder starts at its own address (its index into the region), which is
        // how `split` tells them apart.
        let start = self.by_address.len();
        let region = zero_region(start + range.len);
        let placeholder = region.slice(start..start + range.len);
        debug_assert_eq!(
            placeholder.len(),
            range.len,
            "a placeholder of the wrong length"
        );
        self.by_address.insert(placeholder.as_ptr() as usize, range);
        placeholder
    }
}

/// Pieces of an encoded response: what the codec wrote inline is gathered into `Bytes` (a copy,
/// but only of field headers), placeholders become their file ranges.
pub fn split(mut buf: SegmentedBuf, mut ranges: FileRanges) -> Result<Vec<Piece>, SplitError> {
    let encoded_bytes = buf.remaining();
    let mut pieces = Vec::with_capacity(2 * ranges.by_address.len() + 1);
    let mut inline = BytesMut::new();
    while buf.has_remaining() {
        let chunk = buf.chunk();
        let n = chunk.len();
        match ranges.by_address.remove(&(chunk.as_ptr() as usize)) {
            Some(range) if range.len == n => {
                if !inline.is_empty() {
                    pieces.push(Piece::Bytes(inline.split().freeze()));
                }
                pieces.push(Piece::File(range));
            }
            Some(_) => return Err(SplitError::MissingPlaceholder),
            None => inline.extend_from_slice(chunk),
        }
        buf.advance(n);
    }
    if !ranges.by_address.is_empty() {
        return Err(SplitError::MissingPlaceholder);
    }
    if !inline.is_empty() {
        pieces.push(Piece::Bytes(inline.freeze()));
    }
    debug_assert_eq!(
        pieces.iter().map(Piece::len).sum::<usize>(),
        encoded_bytes,
        "the pieces of a response are not the bytes encoded"
    );
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use proto_kafka::protocol::buf::ByteBufMut;
    use std::io::Write;

    fn file_with(content: &[u8]) -> Arc<File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        Arc::new(f)
    }

    #[test]
    fn placeholders_split_into_file_pieces() {
        let file = file_with(b"0123456789");
        let mut ranges = FileRanges::new();
        let a = ranges.placeholder(FileRange {
            file: file.clone(),
            position: 2,
            len: 3,
        });
        let b = ranges.placeholder(FileRange {
            file: file.clone(),
            position: 0,
            len: 3,
        });
        assert!(ranges
            .placeholder(FileRange {
                file: file.clone(),
                position: 0,
                len: 0,
            })
            .is_empty());
        // Same length, distinct placeholders.
        assert_ne!(a.as_ptr(), b.as_ptr());
        let mut buf = SegmentedBuf::new();
        buf.put_slice(b"head");
        buf.put_shared_bytes(a);
        buf.put_slice(b"mid");
        buf.put_shared_bytes(b);
        let pieces = split(buf, ranges).unwrap();
        let shape: Vec<String> = pieces
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                Piece::File(r) => format!("file {}+{}", r.position, r.len),
            })
            .collect();
        assert_eq!(shape, ["head", "file 2+3", "mid", "file 0+3"]);
    }

    /// A fetch response sent from files is byte for byte the one encoded from memory, in the
    /// fixed-length (v4–v11) and compact (v12+) encodings of the records field.
    #[test]
    fn fetch_response_from_files_matches_encoding_from_memory() {
        use proto_kafka::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        use proto_kafka::messages::{ApiKey, FetchResponse, TopicName};
        use proto_kafka::protocol::StrBytes;

        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let file = file_with(&content);
        let slices = [(10u64, 200_000usize), (0, 0), (250_000, 50_000)];
        let response = |records: &mut dyn FnMut(u64, usize) -> Bytes| {
            let partitions = slices
                .iter()
                .enumerate()
                .map(|(i, &(position, len))| {
                    PartitionData::default()
                        .with_partition_index(i as i32)
                        .with_high_watermark(99)
                        .with_records(Some(records(position, len)))
                })
                .collect();
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions)])
        };
        for version in [4i16, 11, 12, 16] {
            let from_memory =
                response(&mut |p, n| Bytes::copy_from_slice(&content[p as usize..p as usize + n]));
            let want =
                crate::response::encode_response(ApiKey::Fetch, version, 7, &from_memory).unwrap();

            let mut ranges = FileRanges::new();
            let from_files = response(&mut |position, len| {
                ranges.placeholder(FileRange {
                    file: file.clone(),
                    position,
                    len,
                })
            });
            let crate::ResponseFrame::Pieces(pieces) =
                crate::encode_response_with_files(ApiKey::Fetch, version, 7, &from_files, ranges)
                    .unwrap()
            else {
                panic!("not in pieces");
            };
            assert_eq!(
                pieces
                    .iter()
                    .filter(|p| matches!(p, Piece::File(_)))
                    .count(),
                2
            );
            let mut got = Vec::new();
            for piece in &pieces {
                match piece {
                    Piece::Bytes(b) => got.extend_from_slice(b),
                    Piece::File(r) => {
                        let p = r.position as usize;
                        got.extend_from_slice(&content[p..p + r.len]);
                    }
                }
            }
            assert!(got == want[..], "v{version}: encodings differ");
        }
    }

    #[test]
    fn a_lost_placeholder_is_an_error() {
        let file = file_with(b"0123456789");
        let mut ranges = FileRanges::new();
        let _unused = ranges.placeholder(FileRange {
            file,
            position: 0,
            len: 4,
        });
        let mut buf = SegmentedBuf::new();
        buf.put_slice(b"head");
        assert!(split(buf, ranges).is_err());
    }
}
