//! `partition.metadata` (Kafka's PartitionMetadataFile): which topic id a partition directory
//! belongs to, so that a directory can be matched to its topic without the metadata log
//! (to tell a stray directory from a deleted one, and to rebuild a damaged metadata log).
//!
//! ```text
//! version: 0
//! topic_id: <the id in Kafka's text form: URL-safe base64, no padding, 22 characters>
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::{sync_dir, TEMP_SUFFIX};
use crate::error::{IoContext, LogError};

pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
const VERSION: u32 = 0;
const MAX_FILE_BYTES: u64 = 4096;
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A topic id in Kafka's text form (`Uuid.toString()`).
pub fn topic_id_to_string(id: [u8; 16]) -> String {
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in id {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    out
}

/// Parses Kafka's text form of a topic id; `None` if it is not one.
pub fn parse_topic_id(text: &str) -> Option<[u8; 16]> {
    let text = text.trim();
    if text.len() != 22 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut n = 0;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
        }
        acc &= (1 << bits) - 1;
    }
    // 22 characters carry 132 bits: the last 4 must be zero for a canonical encoding.
    (n == 16 && acc == 0).then_some(out)
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(PARTITION_METADATA_FILE)
}

/// The topic id recorded in `dir`: `Ok(None)` when there is no file, an error when there is
/// one that cannot be read as Kafka's format.
pub fn read(dir: &Path) -> Result<Option<[u8; 16]>, LogError> {
    let path = path(dir);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(format!("read {}", path.display()), e)),
    };
    let corrupt = |reason: &str| LogError::Corrupt {
        path: path.clone(),
        reason: reason.to_string(),
    };
    // The real file is about 40 bytes: a damaged one is not read whole into memory.
    let mut text = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_FILE_BYTES + 1),
        &mut text,
    )
    .ctx(|| format!("read {}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(corrupt("far too large"));
    }
    let text = String::from_utf8(text).map_err(|_| corrupt("not text"))?;
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("version:") {
            version = v.trim().parse::<u32>().ok();
        } else if let Some(v) = line.strip_prefix("topic_id:") {
            topic_id = parse_topic_id(v);
        }
    }
    if version != Some(VERSION) {
        return Err(corrupt("missing or unknown version"));
    }
    topic_id
        .map(Some)
        .ok_or_else(|| corrupt("missing or malformed topic_id"))
}

/// Writes the file atomically (temp file, fsync, rename, fsync of the directory).
pub fn write(dir: &Path, topic_id: [u8; 16]) -> Result<(), LogError> {
    let path = path(dir);
    let tmp = dir.join(format!("{PARTITION_METADATA_FILE}{TEMP_SUFFIX}"));
    let content = format!(
        "version: {VERSION}\ntopic_id: {}\n",
        topic_id_to_string(topic_id)
    );
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .ctx(|| format!("create {}", tmp.display()))?;
    file.write_all(content.as_bytes())
        .ctx(|| format!("write {}", tmp.display()))?;
    file.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, &path).ctx(|| format!("rename {} into place", tmp.display()))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_round_trip_in_kafkas_text_form() {
        // Kafka prints Uuid(0, 1) as AAAAAAAAAAAAAAAAAAAAAQ.
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(topic_id_to_string(one), "AAAAAAAAAAAAAAAAAAAAAQ");
        for id in [[0u8; 16], one, [0xff; 16], *b"0123456789abcdef"] {
            assert_eq!(parse_topic_id(&topic_id_to_string(id)), Some(id));
        }
        assert_eq!(
            parse_topic_id("AAAAAAAAAAAAAAAAAAAAAR"),
            None,
            "non-canonical"
        );
        assert_eq!(parse_topic_id("short"), None);
        assert_eq!(parse_topic_id("AAAAAAAAAAAAAAAAAAAA*Q"), None);
    }

    #[test]
    fn writes_and_reads_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read(tmp.path()).unwrap(), None);
        let id = *b"0123456789abcdef";
        write(tmp.path(), id).unwrap();
        assert_eq!(read(tmp.path()).unwrap(), Some(id));
        let text = std::fs::read_to_string(path(tmp.path())).unwrap();
        assert!(text.starts_with("version: 0\ntopic_id: "), "{text}");
        std::fs::write(path(tmp.path()), "garbage").unwrap();
        assert!(read(tmp.path()).is_err());
    }
}
