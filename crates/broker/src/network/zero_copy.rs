//! Sending responses whose record bytes go from the segment file to the socket with sendfile(2),
//! never through user space (Kafka's zero-copy fetch). Their encoding (placeholders, the split
//! into pieces) is strom-protocol's `zero_copy`, re-exported here.
//!
//! The frame's size is committed before the file bytes go out. If a file turns out shorter than
//! its range by then, nothing correct can follow on the connection: [`send_file`] fails with
//! `UnexpectedEof` and the caller closes it. Segments are append-only and retention deletes whole
//! files (an open descriptor keeps their bytes readable), so only a truncation, which a
//! single-node broker performs only while recovering at start-up, can shrink one under a send.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use tokio::io::Interest;
use tokio::net::TcpStream;

pub use strom_protocol::zero_copy::{split, FileRange, FileRanges, Piece, SplitError};

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

/// Writes the pieces through a stream that is not the socket itself (TLS, which must
/// encrypt every byte): file ranges are read into a buffer and written, in order.
pub async fn write_pieces_through<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    pieces: &[Piece],
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    const CHUNK_BYTES: u64 = 256 * 1024;
    let mut buf = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Bytes(b) => w.write_all(b).await?,
            Piece::File(range) => {
                let mut position = range.position;
                let end = range.position + range.len as u64;
                while position < end {
                    let n = (end - position).min(CHUNK_BYTES) as usize;
                    buf.resize(n, 0);
                    let got = range.file.read_at(&mut buf, position)?;
                    if got == 0 {
                        return Err(file_shorter(range, position));
                    }
                    w.write_all(&buf[..got]).await?;
                    position += got as u64;
                }
            }
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
    use bytes::Bytes;
    use std::io::Write;
    use std::sync::Arc;
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
