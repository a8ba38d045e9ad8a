//! Kafka framing: a 4-byte big-endian size, then that many bytes of request.

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The smallest request: api key, api version and correlation id (2 + 2 + 4 bytes).
pub const MIN_REQUEST_BYTES: usize = 8;
/// Frames up to this size get their whole buffer at once: produce requests (librdkafka and
/// Java send up to ~1 MiB) are then read with no copy. Larger claims get memory only as their
/// bytes arrive (the buffer doubles), so a frame claiming a huge size costs this much at most.
const EAGER_FRAME_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame size {size} is larger than socket.request.max.bytes ({max})")]
    TooLarge { size: i64, max: usize },
    #[error("frame size {0} is too small to hold a request header")]
    TooSmall(i64),
    #[error("connection closed in the middle of a frame ({read} of {size} bytes)")]
    Truncated { read: usize, size: usize },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Option<BytesMut>, FrameError> {
    let mut size_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut size_buf[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated { read: got, size: 4 });
        }
        got += n;
    }
    let size = i32::from_be_bytes(size_buf) as i64;
    if size < MIN_REQUEST_BYTES as i64 {
        return Err(FrameError::TooSmall(size));
    }
    if size as u64 > max_bytes as u64 {
        return Err(FrameError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    let size = size as usize;
    // The frame gets its own allocation, never shared with the bytes after it: a produce
    // handler can then take it back as mutable and patch offsets in place. Reads go straight
    // into it when the caller's `BufReader` is empty (tokio's bypass for reads at least as large
    // as its buffer), so only what the reader had buffered ahead is copied.
    let mut buf = BytesMut::with_capacity(size.min(EAGER_FRAME_BYTES));
    while buf.len() < size {
        if buf.capacity() == buf.len() {
            buf.reserve((size - buf.len()).min(buf.len()));
        }
        let want = size - buf.len();
        let n = {
            let mut limited = (&mut *reader).take(want as u64);
            limited.read_buf(&mut buf).await?
        };
        if n == 0 {
            return Err(FrameError::Truncated {
                read: buf.len(),
                size,
            });
        }
    }
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8], max: usize) -> Result<Option<BytesMut>, FrameError> {
        let mut r = bytes;
        read_frame(&mut r, max).await
    }

    #[tokio::test]
    async fn frames_and_limits() {
        let mut ok = 8i32.to_be_bytes().to_vec();
        ok.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let f = read(&ok, 100).await.unwrap().unwrap();
        assert_eq!(&f[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(read(&[], 100).await.unwrap().is_none());
        assert!(matches!(
            read(&[0, 0], 100).await,
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            read(&3i32.to_be_bytes(), 100).await,
            Err(FrameError::TooSmall(3))
        ));
        assert!(matches!(
            read(&(-1i32).to_be_bytes(), 100).await,
            Err(FrameError::TooSmall(-1))
        ));
        assert!(matches!(
            read(&i32::MAX.to_be_bytes(), 100).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut short = 50i32.to_be_bytes().to_vec();
        short.extend_from_slice(&[0; 10]);
        assert!(matches!(
            read(&short, 100).await,
            Err(FrameError::Truncated { read: 10, size: 50 })
        ));
    }
}
