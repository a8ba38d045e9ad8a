//! Reading Kafka frames from a socket: a 4-byte big-endian size, then that many bytes of
//! request. What a size may be is strom-protocol's (`frame`).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

pub use strom_protocol::frame::{frame_size, FrameError, MIN_REQUEST_BYTES, SIZE_PREFIX_BYTES};

/// Frames up to this size get their whole buffer at once: produce requests (librdkafka and
/// Java send up to ~1 MiB) are then read with no copy. Larger claims get memory only as their
/// bytes arrive (the buffer doubles), so a frame claiming a huge size costs this much at most.
const EAGER_FRAME_BYTES: usize = 2 * 1024 * 1024;

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Option<BytesMut>, FrameError> {
    read_frame_limited(reader, || max_bytes).await
}

/// As [`read_frame`], with the limit asked for once the size has arrived: a SASL connection
/// raises it when its client has authenticated, which happens while the next read waits.
pub async fn read_frame_limited<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: impl Fn() -> usize,
) -> Result<Option<BytesMut>, FrameError> {
    let mut size_buf = [0u8; SIZE_PREFIX_BYTES];
    let mut got = 0;
    while got < SIZE_PREFIX_BYTES {
        let n = reader.read(&mut size_buf[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                read: got,
                size: SIZE_PREFIX_BYTES,
            });
        }
        got += n;
    }
    let size = frame_size(size_buf, max_bytes())?;
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
    debug_assert_eq!(buf.len(), size, "a frame read past its size");
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
