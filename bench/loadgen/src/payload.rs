//! The message format: a 24-byte header, then a fixed byte pattern.
//!
//! header (little endian): send time in ns on this process's monotonic clock (u64), the
//! sender's sequence number (u64), the sender's id (u32), a magic number (u32).
//!
//! The send time gives produce-to-consume latency without clock sync, because producer and
//! consumer run in one process. Sequence and sender let the crash test check that the message
//! at an acknowledged offset is the one that was acknowledged. The pattern after the header
//! does not depend on the sequence, so a sender fills its buffer once and rewrites only the
//! header per message; a reader still detects torn or shifted bytes.

use std::sync::OnceLock;
use std::time::Instant;

pub const HEADER: usize = 24;
const MAGIC: u32 = 0x5354_524d; // "STRM"

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process's first call.
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn pattern(i: usize) -> u8 {
    // Multiplicative hash of the index: no run of equal bytes a shifted copy would match.
    ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8
}

/// A message buffer of `size` bytes (at least the header) with the pattern filled in.
pub fn template(size: usize) -> Vec<u8> {
    let size = size.max(HEADER);
    (0..size)
        .map(|i| if i < HEADER { 0 } else { pattern(i) })
        .collect()
}

pub fn stamp(buf: &mut [u8], send_ns: u64, seq: u64, sender: u32) {
    buf[0..8].copy_from_slice(&send_ns.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    buf[16..20].copy_from_slice(&sender.to_le_bytes());
    buf[20..24].copy_from_slice(&MAGIC.to_le_bytes());
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub send_ns: u64,
    pub seq: u64,
    pub sender: u32,
}

/// The header, if the buffer carries one (cheap: used on every consumed message).
pub fn header(buf: &[u8]) -> Option<Header> {
    if buf.len() < HEADER || u32::from_le_bytes(buf[20..24].try_into().ok()?) != MAGIC {
        return None;
    }
    Some(Header {
        send_ns: u64::from_le_bytes(buf[0..8].try_into().ok()?),
        seq: u64::from_le_bytes(buf[8..16].try_into().ok()?),
        sender: u32::from_le_bytes(buf[16..20].try_into().ok()?),
    })
}

/// The header, after checking every byte of the pattern (the crash test's content check).
pub fn check(buf: &[u8]) -> Result<Header, String> {
    let h = header(buf).ok_or("no header (bad magic or short message)")?;
    if let Some(i) = (HEADER..buf.len()).find(|&i| buf[i] != pattern(i)) {
        return Err(format!("pattern differs at byte {i} of {}", buf.len()));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let mut b = template(100);
        stamp(&mut b, 7, 9, 3);
        assert_eq!(
            check(&b).unwrap(),
            Header {
                send_ns: 7,
                seq: 9,
                sender: 3
            }
        );
        b[50] ^= 1;
        assert!(check(&b).is_err());
        assert!(header(&b[..10]).is_none());
    }
}
