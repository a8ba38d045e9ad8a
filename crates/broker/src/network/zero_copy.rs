//! Responses whose record bytes go from the segment file to the socket with sendfile(2), never
//! through user space (Kafka's zero-copy fetch).
//!
//! The generated codecs only know byte fields held in memory, and they write each field's length
//! from its `Bytes`. So a file range is encoded as a *placeholder*: a `Bytes` of the right length
//! that points into a zeroed region nobody writes or reads. `SegmentedBuf` keeps such a field as
//! a reference of its own, and [`split`] turns the encoded buffer into [`Piece`]s, recognising
//! the placeholders by address.
//!
//! The frame's size is committed before the file bytes go out. If a file turns out shorter than
//! its range by then, nothing correct can follow on the connection: [`send_file`] fails with
//! `UnexpectedEof` and the caller closes it. Segments are append-only and retention deletes whole
//! files (an open descriptor keeps their bytes readable), so only a truncation, which a
//! single-node broker performs only while recovering at start-up, can shrink one under a send.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use proto_kafka::protocol::buf::SegmentedBuf;
use tokio::io::Interest;
use tokio::net::TcpStream;

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
/// above the allocator's mmap threshold (`crate::memory`), so it is fresh mapped memory that
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
        self.by_address.insert(placeholder.as_ptr() as usize, range);
        placeholder
    }
}

/// Pieces of an encoded response: what the codec wrote inline is gathered into `Bytes` (a copy,
/// but only of field headers), placeholders become their file ranges.
pub fn split(mut buf: SegmentedBuf, mut ranges: FileRanges) -> Result<Vec<Piece>, SplitError> {
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
    Ok(pieces)
}

/// Writes the pieces in order. Small pieces are sent with MSG_MORE so that they leave in the
/// same TCP segment as the file bytes that follow them.
pub async fn write_pieces(stream: &TcpStream, pieces: &[Piece]) -> io::Result<()> {
    let count = pieces.len();
    for (i, piece) in pieces.iter().enumerate() {
        let more = i + 1 < count;
        match piece {
            Piece::Bytes(b) => send_bytes(stream, b, more).await?,
            Piece::File(r) => send_file(stream, r).await?,
        }
    }
    Ok(())
}

async fn send_bytes(stream: &TcpStream, mut bytes: &[u8], more: bool) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_io(Interest::WRITABLE, || sys::send(stream, bytes, more)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Sends `range` with sendfile(2), falling back to pread + write where the file system cannot.
pub async fn send_file(stream: &TcpStream, range: &FileRange) -> io::Result<()> {
    let mut position = range.position;
    let end = range.position + range.len as u64;
    while position < end {
        stream.writable().await?;
        let want = (end - position).min(sys::MAX_SENDFILE_BYTES) as usize;
        match stream.try_io(Interest::WRITABLE, || {
            sys::sendfile(stream, &range.file, position, want)
        }) {
            Ok(0) => return Err(file_shorter(range, position)),
            Ok(n) => position += n as u64,
            Err(e) if retry(&e) => {}
            Err(e) if sys::sendfile_unsupported(&e) => {
                return copy_file(stream, range, position).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn file_shorter(range: &FileRange, at: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "file ends at byte {at}, inside the range {}..{} the response promised",
            range.position,
            range.position + range.len as u64
        ),
    )
}

/// The slow path: read through a buffer, for files sendfile cannot read.
async fn copy_file(stream: &TcpStream, range: &FileRange, mut position: u64) -> io::Result<()> {
    const CHUNK_BYTES: u64 = 256 * 1024;
    let end = range.position + range.len as u64;
    let mut buf = Vec::new();
    while position < end {
        let n = (end - position).min(CHUNK_BYTES) as usize;
        buf.resize(n, 0);
        let got = range.file.read_at(&mut buf, position)?;
        if got == 0 {
            return Err(file_shorter(range, position));
        }
        send_bytes(stream, &buf[..got], true).await?;
        position += got as u64;
    }
    Ok(())
}

/// The two system calls tokio does not offer, on the stream's own descriptor.
mod sys {
    use super::*;

    /// Linux transfers at most this much per sendfile call.
    pub const MAX_SENDFILE_BYTES: u64 = 0x7fff_f000;

    pub fn send(stream: &TcpStream, bytes: &[u8], more: bool) -> io::Result<usize> {
        let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
        // SAFETY: the descriptor belongs to `stream`, which outlives the call; the pointer and
        // length describe `bytes`, which the kernel only reads.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                flags,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    pub fn sendfile(
        stream: &TcpStream,
        file: &File,
        position: u64,
        len: usize,
    ) -> io::Result<usize> {
        let mut offset = libc::off_t::try_from(position)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file position too large"))?;
        // SAFETY: both descriptors belong to objects borrowed for the duration of the call;
        // `offset` is a local the kernel updates (the file's own position is left alone).
        let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, len) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// sendfile refuses this source (a file system without splice support).
    pub fn sendfile_unsupported(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use proto_kafka::protocol::buf::ByteBufMut;
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn file_with(content: &[u8]) -> Arc<File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        Arc::new(f)
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
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
                crate::request::encode_response(ApiKey::Fetch, version, 7, &from_memory).unwrap();

            let mut ranges = FileRanges::new();
            let from_files = response(&mut |position, len| {
                ranges.placeholder(FileRange {
                    file: file.clone(),
                    position,
                    len,
                })
            });
            let ctx = crate::request::RequestContext {
                api: ApiKey::Fetch,
                version,
                correlation_id: 7,
                client_id: String::new(),
                info: Arc::new(crate::network::connection::ConnectionInfo {
                    listener_name: "PLAINTEXT".into(),
                    peer: "127.0.0.1:1".parse().unwrap(),
                    cancel: crate::network::connection::WaitCancel::new().1,
                }),
            };
            let crate::request::ResponseFrame::Pieces(pieces) =
                ctx.respond_with_files(&from_files, ranges).unwrap()
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

    #[tokio::test]
    async fn pieces_arrive_in_order() {
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let file = file_with(&content);
        let pieces = vec![
            Piece::Bytes(Bytes::from_static(b"head")),
            Piece::File(FileRange {
                file: file.clone(),
                position: 7,
                len: 2_500_000,
            }),
            Piece::Bytes(Bytes::from_static(b"tail")),
        ];
        let (tx, mut rx) = pair().await;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).await.unwrap();
            got
        });
        write_pieces(&tx, &pieces).await.unwrap();
        drop(tx);
        let got = reader.await.unwrap();
        let mut want = b"head".to_vec();
        want.extend_from_slice(&content[7..2_500_007]);
        want.extend_from_slice(b"tail");
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_range_fails() {
        let file = file_with(b"0123456789");
        let (tx, _rx) = pair().await;
        let err = send_file(
            &tx,
            &FileRange {
                file,
                position: 5,
                len: 10,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
