//! Idempotent producers (KIP-98): per partition, the last batches of each producer id, so a
//! retried batch is answered with its original offsets instead of being written twice, and a
//! gap in sequence numbers is refused (Kafka's ProducerStateManager).

use std::collections::{HashMap, VecDeque};

use proto_kafka::ResponseError;
use strom_log::batch::parse_header;
use strom_log::BatchHeader;

/// Kafka keeps the last five batches per producer: the most a producer has in flight.
const CACHED_BATCHES_PER_PRODUCER: usize = 5;
/// Bound on producers remembered per partition; the least recently written is forgotten.
const MAX_PRODUCERS_PER_PARTITION: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_write_offset: i64,
}

/// What to do with an append, decided before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// The batch was written before: answer with where it went.
    Duplicate {
        first_offset: i64,
        last_offset: i64,
    },
}

#[derive(Debug, Default)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap from i32::MAX to 0.
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// The headers of the batches in `records`, framing only (the log checks CRCs on append).
pub fn batch_headers(records: &[u8]) -> Result<Vec<BatchHeader>, ResponseError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let h = parse_header(&records[pos..], pos as u64).map_err(|e| {
            ResponseError::try_from_code(e.kafka_error_code())
                .unwrap_or(ResponseError::CorruptMessage)
        })?;
        let size = h.size_bytes();
        if size == 0 || pos + size > records.len() {
            return Err(ResponseError::CorruptMessage);
        }
        out.push(h);
        pos += size;
    }
    Ok(out)
}

impl ProducerStateManager {
    /// Checks the batches of one append against what each producer wrote before.
    pub fn check(&self, headers: &[BatchHeader]) -> Result<SequenceCheck, ResponseError> {
        let idempotent: Vec<&BatchHeader> = headers.iter().filter(|h| h.producer_id >= 0).collect();
        if idempotent.is_empty() {
            return Ok(SequenceCheck::Append);
        }
        if headers.iter().any(|h| h.is_control()) {
            // Control batches are written by transaction coordinators, never by clients.
            return Err(ResponseError::InvalidRecord);
        }
        if headers.iter().any(|h| h.is_transactional()) {
            // Transactions are not implemented yet; InitProducerId refuses transactional ids,
            // so these come only from a misbehaving client.
            return Err(ResponseError::InvalidRecord);
        }
        // Walk the batches in order, as if each were appended, against a scratch copy.
        let mut expected: HashMap<i64, (i16, Option<i32>)> = HashMap::new();
        for h in &idempotent {
            let (epoch, last) = match expected.get(&h.producer_id) {
                Some(e) => *e,
                None => match self.producers.get(&h.producer_id) {
                    Some(entry) => (entry.epoch, entry.batches.back().map(|b| b.last_seq)),
                    // Unknown producer (new, or forgotten across a restart): accept.
                    None => (h.producer_epoch, None),
                },
            };
            if h.producer_epoch < epoch {
                return Err(ResponseError::InvalidProducerEpoch);
            }
            if h.producer_epoch > epoch {
                if h.base_sequence != 0 {
                    return Err(ResponseError::OutOfOrderSequenceNumber);
                }
            } else if let Some(last) = last {
                if let Some(entry) = self.producers.get(&h.producer_id) {
                    if let Some(dup) = entry
                        .batches
                        .iter()
                        .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq(h))
                    {
                        if idempotent.len() == 1 && headers.len() == 1 {
                            return Ok(SequenceCheck::Duplicate {
                                first_offset: dup.first_offset,
                                last_offset: dup.last_offset,
                            });
                        }
                        return Err(ResponseError::DuplicateSequenceNumber);
                    }
                }
                if h.base_sequence != next_seq(last) {
                    return Err(ResponseError::OutOfOrderSequenceNumber);
                }
            }
            expected.insert(h.producer_id, (h.producer_epoch, Some(last_seq(h))));
        }
        Ok(SequenceCheck::Append)
    }

    /// Records the batches of an append that was written starting at `first_offset`.
    pub fn update(&mut self, headers: &[BatchHeader], first_offset: i64) {
        let mut offset = first_offset;
        for h in headers {
            let first = offset;
            let last = offset + h.last_offset_delta as i64;
            offset = last + 1;
            if h.producer_id < 0 {
                continue;
            }
            if !self.producers.contains_key(&h.producer_id)
                && self.producers.len() >= MAX_PRODUCERS_PER_PARTITION
            {
                if let Some(oldest) = self
                    .producers
                    .iter()
                    .min_by_key(|(_, e)| e.last_write_offset)
                    .map(|(id, _)| *id)
                {
                    self.producers.remove(&oldest);
                }
            }
            let entry = self.producers.entry(h.producer_id).or_default();
            if h.producer_epoch != entry.epoch {
                entry.batches.clear();
                entry.epoch = h.producer_epoch;
            }
            entry.batches.push_back(BatchMeta {
                first_seq: h.base_sequence,
                last_seq: last_seq(h),
                first_offset: first,
                last_offset: last,
            });
            while entry.batches.len() > CACHED_BATCHES_PER_PRODUCER {
                entry.batches.pop_front();
            }
            entry.last_write_offset = last;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut s = ProducerStateManager::default();
        let b0 = header(7, 0, 0, 3);
        assert_eq!(s.check(&[b0]), Ok(SequenceCheck::Append));
        s.update(&[b0], 100);
        // A retry of the same batch is answered with its first placement.
        assert_eq!(
            s.check(&[b0]),
            Ok(SequenceCheck::Duplicate {
                first_offset: 100,
                last_offset: 102
            })
        );
        let b1 = header(7, 0, 3, 2);
        assert_eq!(s.check(&[b1]), Ok(SequenceCheck::Append));
        s.update(&[b1], 103);
        assert_eq!(
            s.check(&[header(7, 0, 9, 1)]),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            s.check(&[header(7, 1, 5, 1)]),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(s.check(&[header(7, 1, 0, 1)]), Ok(SequenceCheck::Append));
        s.update(&[header(7, 1, 0, 1)], 105);
        assert_eq!(
            s.check(&[header(7, 0, 5, 1)]),
            Err(ResponseError::InvalidProducerEpoch)
        );
        // Non-idempotent batches are never checked.
        assert_eq!(s.check(&[header(-1, -1, -1, 4)]), Ok(SequenceCheck::Append));
        // Unknown producers are accepted at any sequence.
        assert_eq!(s.check(&[header(99, 3, 42, 1)]), Ok(SequenceCheck::Append));
    }

    #[test]
    fn sequences_wrap() {
        let mut s = ProducerStateManager::default();
        let h = header(1, 0, i32::MAX - 1, 2);
        s.update(&[h], 0);
        assert_eq!(s.check(&[header(1, 0, 0, 1)]), Ok(SequenceCheck::Append));
        assert_eq!(
            s.check(&[header(1, 0, 1, 1)]),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStateManager::default();
        for i in 0..7 {
            s.update(&[header(1, 0, i, 1)], i as i64);
        }
        assert!(matches!(
            s.check(&[header(1, 0, 6, 1)]),
            Ok(SequenceCheck::Duplicate { .. })
        ));
        assert!(matches!(
            s.check(&[header(1, 0, 2, 1)]),
            Ok(SequenceCheck::Duplicate { .. })
        ));
        assert_eq!(
            s.check(&[header(1, 0, 1, 1)]),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
    }
}
