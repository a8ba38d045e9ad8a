//! Kafka framing: a 4-byte big-endian size, then that many bytes of request. The reading itself
//! is the network's (strom-broker); this is what a size prefix may say.

use thiserror::Error;

/// The smallest request: api key, api version and correlation id (2 + 2 + 4 bytes).
pub const MIN_REQUEST_BYTES: usize = 8;
/// Bytes of the size prefix.
pub const SIZE_PREFIX_BYTES: usize = 4;

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

/// The size a frame's prefix announces, if a request of that size may be read: at least the
/// 8 bytes of a request header, at most `max_bytes` (socket.request.max.bytes).
pub fn frame_size(prefix: [u8; SIZE_PREFIX_BYTES], max_bytes: usize) -> Result<usize, FrameError> {
    let size = i64::from(i32::from_be_bytes(prefix));
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
    debug_assert!(
        (MIN_REQUEST_BYTES..=max_bytes).contains(&size),
        "a frame size outside its limits passed the checks"
    );
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_limits() {
        assert_eq!(frame_size(8i32.to_be_bytes(), 100).unwrap(), 8);
        assert_eq!(frame_size(100i32.to_be_bytes(), 100).unwrap(), 100);
        assert!(matches!(
            frame_size(3i32.to_be_bytes(), 100),
            Err(FrameError::TooSmall(3))
        ));
        assert!(matches!(
            frame_size((-1i32).to_be_bytes(), 100),
            Err(FrameError::TooSmall(-1))
        ));
        assert!(matches!(
            frame_size(101i32.to_be_bytes(), 100),
            Err(FrameError::TooLarge {
                size: 101,
                max: 100
            })
        ));
        assert!(matches!(
            frame_size(i32::MAX.to_be_bytes(), usize::MAX),
            Ok(n) if n == i32::MAX as usize
        ));
    }
}
