//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`): a broker on a
//! directory, without listeners or background tasks (the `testkit`'s), that takes one request
//! frame at a time through `request::handle` as a connection would.

pub mod seeds;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::network::zero_copy::Piece;
use crate::request::ConnectionInfo;
use crate::request::{Reply, ResponseFrame};

/// Longest one request may take before the harness calls it a hang.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    broker: Arc<Broker>,
    info: Arc<ConnectionInfo>,
    // Kept so the connection's waits stay cancelled (set) rather than orphaned.
    _cancel: watch::Sender<bool>,
}

impl Harness {
    /// A broker of one node on `data_dir` (created or reopened). Produce is acknowledged
    /// without fsync and waits (fetch, JoinGroup) end at once, as for a peer that has gone,
    /// so one input is one bounded step.
    pub fn new(data_dir: &Path) -> anyhow::Result<Harness> {
        let config = crate::testkit::test_config(data_dir, &[])?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let broker = runtime.block_on(crate::testkit::open_broker(config))?;
        let (cancel_tx, info) = crate::testkit::test_connection();
        cancel_tx.send_replace(true);
        Ok(Harness {
            runtime,
            broker,
            info,
            _cancel: cancel_tx,
        })
    }

    /// Handles one request frame (without its 4-byte size) and returns the response frame
    /// (with its size), or `None` where a connection would send nothing (acks=0) or close
    /// (a request it refuses). Panics only where the broker is wrong: a request that does not
    /// end, or a response whose size or correlation id does not match.
    pub fn handle(&self, frame: &[u8]) -> Option<Vec<u8>> {
        if frame.len() < crate::network::frame::MIN_REQUEST_BYTES
            || frame.len() > self.broker.config.socket_request_max_bytes
        {
            // The frame layer refuses these before `request::handle` sees them.
            return None;
        }
        let response = self.runtime.block_on(async {
            let reply =
                crate::dispatch::handle(&self.broker, &self.info, BytesMut::from(frame)).await;
            match reply {
                Ok(Reply::Now(r)) => r,
                Ok(Reply::Later(pending)) => tokio::time::timeout(REQUEST_DEADLINE, pending)
                    .await
                    .unwrap_or_else(|_| panic!("a request did not finish in {REQUEST_DEADLINE:?}")),
                Err(_) => None,
            }
        })?;
        let bytes = flatten(response);
        assert!(bytes.len() >= 8, "response of {} bytes", bytes.len());
        let size = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        assert_eq!(size as usize, bytes.len() - 4, "response size prefix");
        assert_eq!(bytes[4..8], frame[4..8], "response correlation id");
        Some(bytes)
    }
}

fn flatten(frame: ResponseFrame) -> Vec<u8> {
    match frame {
        ResponseFrame::Flat(b) => b.to_vec(),
        ResponseFrame::Pieces(pieces) => {
            let mut out = Vec::new();
            for p in pieces {
                match p {
                    Piece::Bytes(b) => out.extend_from_slice(&b),
                    Piece::File(r) => {
                        let start = out.len();
                        out.resize(start + r.len, 0);
                        // A segment cut shorter meanwhile: a connection would close.
                        if r.file.read_exact_at(&mut out[start..], r.position).is_err() {
                            out.truncate(start);
                        }
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn answers_api_versions_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let h = Harness::new(dir.path()).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i16(18); // ApiVersions
        frame.put_i16(0);
        frame.put_i32(42);
        frame.put_i16(-1); // client id: null
        let response = h.handle(&frame).unwrap();
        assert_eq!(&response[4..8], &42i32.to_be_bytes());
        assert_eq!(&response[8..10], &0i16.to_be_bytes());
        assert!(h.handle(&[0xff; 12]).is_none());
    }

    /// Found by the `request` target (and issue 9's 48-byte frame): CreateTopics v2 with
    /// `num_partitions = 0x7fffffff` allocated the whole partition plan before the limit
    /// was checked, and the allocator aborted. It is refused with POLICY_VIOLATION.
    #[test]
    fn create_topics_with_a_huge_partition_count_is_refused_not_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let h = Harness::new(dir.path()).unwrap();
        let frame: Vec<u8> = (0..44)
            .map(|i| {
                u8::from_str_radix(
                    &"001300020000000900036f6c64000000010006667a2d6e65777fffffff000100000000000000000000138801"[2 * i..2 * i + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        let response = h.handle(&frame).unwrap();
        // size, correlation id, throttle, 1 topic: name "fz-new", error code, message
        assert_eq!(&response[16..24], b"\x00\x06fz-new");
        assert_eq!(&response[24..26], &44i16.to_be_bytes(), "POLICY_VIOLATION");
    }

    /// Every request seed is a frame the broker answers (none refused as undecodable), so
    /// the corpus starts the fuzzer inside every handler. With `STROM_FUZZ_CORPUS` set to a
    /// directory, writes the corpus there, one subdirectory per target.
    #[test]
    fn write_seed_corpus() {
        let dir = tempfile::tempdir().unwrap();
        let h = Harness::new(dir.path()).unwrap();
        let requests = seeds::request_seeds();
        assert!(requests.len() > 100, "{} request seeds", requests.len());
        let mut refused = Vec::new();
        for (name, frame) in &requests {
            if h.handle(frame).is_none() && !name.contains("Produce") {
                refused.push(name.clone());
            }
        }
        assert!(refused.is_empty(), "seeds without an answer: {refused:?}");
        // The content seeds did what they say.
        let image = h.broker.image();
        let topic = image.topic("fuzz").expect("the seed topic was created");
        assert_eq!(
            topic.partitions.len(),
            3,
            "created with 2, then CreatePartitions to 3"
        );
        let hw = h.broker.replicas.get("fuzz", 0).unwrap().high_watermark();
        assert_eq!(hw, 9, "three produce seeds of three records");
        for (target, seeds) in [
            ("request", requests),
            ("batch", seeds::batch_seeds()),
            ("metadata", seeds::metadata_seeds()),
            ("group_records", seeds::group_record_seeds()),
        ] {
            assert!(seeds.len() >= 3, "{target}: {} seeds", seeds.len());
            if let Some(root) = std::env::var_os("STROM_FUZZ_CORPUS") {
                let out = std::path::Path::new(&root).join(target);
                std::fs::create_dir_all(&out).unwrap();
                for (name, bytes) in seeds {
                    std::fs::write(out.join(format!("seed-{name}")), bytes).unwrap();
                }
            }
        }
    }
}
