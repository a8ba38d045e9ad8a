//! A forward walk over the record batches of a file region (segment recovery, reads, the
//! cleaner, producer-state replay and `verify` all walk batches this way).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::batch::{parse_header, BatchHeader, ATTRIBUTES_OFFSET, RECORD_BATCH_HEADER_SIZE};
use crate::error::{BatchError, IoContext, LogError};

pub(crate) enum ScanItem {
    Batch { position: u64, header: BatchHeader },
    End,
    Invalid { position: u64, error: BatchError },
}

/// Walks the batches of a file region through a reusable read buffer.
pub(crate) struct BatchScanner<'a> {
    file: &'a File,
    path: &'a Path,
    end: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk_bytes: usize,
    /// Header of the batch just reported with a CRC mismatch: it parsed and fits, so a caller
    /// may step over it ([`BatchScanner::skip_bad_crc`]) to see whether the chain goes on.
    bad_crc_header: Option<BatchHeader>,
}

impl<'a> BatchScanner<'a> {
    pub(crate) fn new(
        file: &'a File,
        path: &'a Path,
        start: u64,
        end: u64,
        chunk_bytes: usize,
    ) -> Self {
        BatchScanner {
            file,
            path,
            end,
            pos: start,
            buf: Vec::new(),
            buf_start: 0,
            chunk_bytes,
            bad_crc_header: None,
        }
    }

    /// Steps over the batch last reported as [`BatchError::CrcMismatch`], returning its
    /// header; `None` if the last item was anything else.
    pub(crate) fn skip_bad_crc(&mut self) -> Option<BatchHeader> {
        let header = self.bad_crc_header.take()?;
        self.pos += header.size_bytes() as u64;
        Some(header)
    }

    /// Returns `len` bytes at `pos`; the caller guarantees `pos + len <= end`.
    fn bytes_at(&mut self, pos: u64, len: usize) -> Result<&[u8], LogError> {
        debug_assert!(pos + len as u64 <= self.end);
        let buf_end = self.buf_start + self.buf.len() as u64;
        if pos < self.buf_start || pos + len as u64 > buf_end {
            let want = (len.max(self.chunk_bytes) as u64).min(self.end - pos) as usize;
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf, pos)
                .ctx(|| format!("read {} at {pos}", self.path.display()))?;
            self.buf_start = pos;
        }
        let from = (pos - self.buf_start) as usize;
        Ok(&self.buf[from..from + len])
    }

    pub(crate) fn next(&mut self, verify_crc: bool) -> Result<ScanItem, LogError> {
        self.bad_crc_header = None;
        let position = self.pos;
        if position >= self.end {
            return Ok(ScanItem::End);
        }
        let remaining = self.end - position;
        let header_len = (RECORD_BATCH_HEADER_SIZE as u64).min(remaining) as usize;
        let header = match parse_header(self.bytes_at(position, header_len)?, position) {
            Ok(h) => h,
            Err(error) => return Ok(ScanItem::Invalid { position, error }),
        };
        let size = header.size_bytes() as u64;
        if size > remaining {
            return Ok(ScanItem::Invalid {
                position,
                error: BatchError::Truncated {
                    position,
                    needed_bytes: size,
                    available_bytes: remaining,
                },
            });
        }
        if verify_crc {
            let mut crc = 0u32;
            let mut at = position + ATTRIBUTES_OFFSET as u64;
            let stop = position + size;
            while at < stop {
                let n = ((stop - at) as usize).min(self.chunk_bytes);
                crc = crc32c::crc32c_append(crc, self.bytes_at(at, n)?);
                at += n as u64;
            }
            if crc != header.crc {
                self.bad_crc_header = Some(header);
                return Ok(ScanItem::Invalid {
                    position,
                    error: BatchError::CrcMismatch {
                        position,
                        stored: header.crc,
                        computed: crc,
                    },
                });
            }
        }
        self.pos = position + size;
        Ok(ScanItem::Batch { position, header })
    }
}
