//! One transactional id's state and its transitions, after Kafka's `TransactionMetadata` and
//! `TransactionCoordinator`: free of I/O and clocks (time is passed in, new producer ids come
//! from the caller). A transition is planned against the current state and returned as data
//! (the next state, the `__transaction_state` record to write, the markers to send); the
//! caller writes the record and only once it is durable makes the next state current
//! ([`TxnMetadata::complete`]), as Kafka's `prepareTransition` / `completeTransitionTo` do.
//! While a write is in flight the id answers CONCURRENT_TRANSACTIONS.

use std::collections::BTreeSet;

use proto_kafka::ResponseError;

/// The state is the log's (a record field), re-exported where the transitions are.
pub use crate::records::TxnState;
use crate::records::{TopicPartitions, TxnValue};

/// The outcome a transaction ends with, and its control-batch type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnResult {
    Commit,
    Abort,
}

pub type TopicPartition = (String, i32);

/// The verify-only AddPartitionsToTxn's answer: per partition, whether it is in the
/// transaction.
pub type Verified = Vec<(TopicPartition, Result<(), ResponseError>)>;

/// A COMMIT or ABORT control batch to write to one partition of a transaction (including the
/// `__consumer_offsets` partition of offsets added with AddOffsetsToTxn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The leader epoch of the coordinator's `__transaction_state` partition: partitions
    /// refuse markers of a deposed coordinator.
    pub coordinator_epoch: i32,
    pub result: TxnResult,
}

/// Kafka's largest epoch a producer may use: at `i16::MAX - 1` a bump takes a new producer id
/// instead (`TransactionMetadata.isEpochExhausted`).
pub const MAX_USABLE_EPOCH: i16 = i16::MAX - 1;

pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= MAX_USABLE_EPOCH
}

/// The transaction protocol a client speaks: 0 and 1 are the KIP-98 protocol, 2 is KIP-890
/// part 2 (an epoch bump at every EndTxn, partitions added implicitly by their leaders).
pub type TransactionVersion = i16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so a retried request of the previous epoch is
    /// recognised (KIP-360); -1 when none.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_timestamp_ms: i64,
    pub last_update_timestamp_ms: i64,
    pub client_transaction_version: TransactionVersion,
    /// The planned next state whose record is being written.
    pub pending: Option<Box<TxnMetadata>>,
}

/// A planned change of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// What the id becomes once `record` is durable.
    pub next: TxnMetadata,
    /// The `__transaction_state` record: key and value (None: a tombstone).
    pub record: (String, Option<TxnValue>),
    /// Markers to send once the record is durable; their acknowledgement leads to
    /// [`TxnMetadata::complete_markers`].
    pub markers: Vec<Marker>,
}

/// What InitProducerId answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// The id's producer id and epoch, after `transition` is durable (None: nothing to write).
    Ready {
        producer_id: i64,
        producer_epoch: i16,
        transition: Option<Transition>,
    },
    /// An ongoing transaction is being aborted first: the client is told
    /// CONCURRENT_TRANSACTIONS and retries, as Kafka does.
    AbortFirst(Transition),
}

/// The checks a request's producer id and epoch pass before it touches a transaction.
fn check_producer(
    m: &TxnMetadata,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<(), ResponseError> {
    if m.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    if m.pending.is_some() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    Ok(())
}

impl TxnMetadata {
    /// A new transactional id given `producer_id`, before its first epoch.
    pub fn new(
        transactional_id: &str,
        producer_id: i64,
        timeout_ms: i32,
        client_transaction_version: TransactionVersion,
        now_ms: i64,
    ) -> TxnMetadata {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: now_ms,
            client_transaction_version,
            pending: None,
        }
    }

    /// The id as its value record describes it (the loader's view).
    pub fn from_value(transactional_id: &str, v: &TxnValue) -> TxnMetadata {
        let partitions = v
            .partitions
            .iter()
            .flatten()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.clone(), *p)))
            .collect();
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: -1,
            timeout_ms: v.timeout_ms,
            state: v.state,
            partitions,
            start_timestamp_ms: v.start_timestamp_ms,
            last_update_timestamp_ms: v.last_update_timestamp_ms,
            client_transaction_version: v.client_transaction_version,
            pending: None,
        }
    }

    pub fn to_value(&self) -> TxnValue {
        let partitions = if self.state == TxnState::Empty {
            None
        } else {
            let mut tps: Vec<TopicPartitions> = Vec::new();
            for (topic, p) in &self.partitions {
                match tps.last_mut() {
                    Some(last) if &last.topic == topic => last.partitions.push(*p),
                    _ => tps.push(TopicPartitions {
                        topic: topic.clone(),
                        partitions: vec![*p],
                    }),
                }
            }
            Some(tps)
        };
        TxnValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions,
            last_update_timestamp_ms: self.last_update_timestamp_ms,
            start_timestamp_ms: self.start_timestamp_ms,
            client_transaction_version: self.client_transaction_version,
        }
    }

    fn plan(&self, next: TxnMetadata, markers: Vec<Marker>) -> Transition {
        let value = next.to_value();
        Transition {
            record: (self.transactional_id.clone(), Some(value)),
            next,
            markers,
        }
    }

    fn successor(&self, state: TxnState, now_ms: i64) -> TxnMetadata {
        let mut next = self.clone();
        next.pending = None;
        next.state = state;
        next.last_update_timestamp_ms = now_ms;
        next
    }

    /// Marks `t` as being written.
    pub fn begin(&mut self, t: &Transition) {
        self.pending = Some(Box::new(t.next.clone()));
    }

    /// The write of the pending transition is durable: it becomes the state.
    pub fn complete(&mut self) {
        if let Some(next) = self.pending.take() {
            *self = *next;
        }
    }

    /// The write failed: the state stays what it was.
    pub fn abandon(&mut self) {
        self.pending = None;
    }

    /// InitProducerId with this transactional id. `expected` is the producer id and epoch the
    /// client already has (KIP-360; None for a fresh producer). `max_timeout_ms` is
    /// `transaction.max.timeout.ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn init_producer_id(
        &self,
        timeout_ms: i32,
        max_timeout_ms: i32,
        expected: Option<(i64, i16)>,
        client_transaction_version: TransactionVersion,
        coordinator_epoch: i32,
        now_ms: i64,
        new_producer_id: &mut dyn FnMut() -> Result<i64, ResponseError>,
    ) -> Result<InitOutcome, ResponseError> {
        check_timeout(timeout_ms, max_timeout_ms)?;
        if self.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if let Some((pid, epoch)) = expected {
            // KIP-360: a producer recovering with the id it had is let through when that id is
            // this id's, or the one before a roll-over at an exhausted epoch.
            let known = self.producer_epoch == -1
                || pid == self.producer_id
                || (pid == self.previous_producer_id && is_epoch_exhausted(epoch));
            if !known {
                return Err(ResponseError::ProducerFenced);
            }
        }
        match self.state {
            TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::PrepareEpochFence
            | TxnState::Dead => Err(ResponseError::ConcurrentTransactions),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = self.successor(TxnState::Empty, now_ms);
                let rotate = is_epoch_exhausted(self.producer_epoch)
                    && expected.is_none_or(|(_, e)| e == self.producer_epoch);
                if rotate {
                    next.previous_producer_id = self.producer_id;
                    next.producer_id = new_producer_id()?;
                    next.producer_epoch = 0;
                    next.last_producer_epoch = if expected.is_some() {
                        self.producer_epoch
                    } else {
                        -1
                    };
                } else {
                    // Without an expected epoch the last epoch is forgotten, so the producer
                    // fenced now cannot pass for a retry later.
                    let (epoch, last) = match expected {
                        None => (self.producer_epoch.saturating_add(1), -1),
                        Some((_, e)) if self.producer_epoch == -1 || e == self.producer_epoch => {
                            (self.producer_epoch.saturating_add(1), self.producer_epoch)
                        }
                        // A retry of a bump that succeeded: the same epoch again.
                        Some((_, e)) if e == self.last_producer_epoch => {
                            (self.producer_epoch, self.last_producer_epoch)
                        }
                        Some(_) => return Err(ResponseError::ProducerFenced),
                    };
                    if epoch != self.producer_epoch && is_epoch_exhausted(self.producer_epoch) {
                        return Err(ResponseError::ProducerFenced);
                    }
                    next.producer_epoch = epoch;
                    next.last_producer_epoch = last;
                }
                next.timeout_ms = timeout_ms;
                next.partitions.clear();
                next.start_timestamp_ms = -1;
                next.client_transaction_version = client_transaction_version;
                let t = self.plan(next, Vec::new());
                Ok(InitOutcome::Ready {
                    producer_id: t.next.producer_id,
                    producer_epoch: t.next.producer_epoch,
                    transition: Some(t),
                })
            }
            TxnState::Ongoing => {
                // A new producer of this id fences the old one: its transaction is aborted
                // with a bumped epoch, so the old producer's late writes are refused.
                Ok(InitOutcome::AbortFirst(
                    self.fence_and_abort(coordinator_epoch, now_ms)?,
                ))
            }
        }
    }

    /// Aborts the ongoing transaction with the epoch bumped (Kafka's
    /// `prepareFenceProducerEpoch` then `prepareAbortOrCommit`): fencing an old producer, or a
    /// transaction past its timeout.
    pub fn fence_and_abort(
        &self,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<Transition, ResponseError> {
        if self.state != TxnState::Ongoing || self.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let mut next = self.successor(TxnState::PrepareAbort, now_ms);
        // The fence may take the last epoch there is (the producer's next InitProducerId then
        // gets a new producer id); only at i16::MAX itself is there nothing to bump to, and
        // the abort goes out at that epoch. The last epoch is forgotten, so the fenced
        // producer cannot pass for a retry.
        next.producer_epoch = self.producer_epoch.saturating_add(1);
        next.last_producer_epoch = -1;
        let markers = next.markers(TxnResult::Abort, coordinator_epoch);
        Ok(self.plan(next, markers))
    }

    /// AddPartitionsToTxn (v0–v3, and v4+ entries without `verify_only`) and AddOffsetsToTxn
    /// (with the group's `__consumer_offsets` partition). Ok(None): already in the
    /// transaction, nothing to write.
    pub fn add_partitions(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Result<Option<Transition>, ResponseError> {
        check_producer(self, producer_id, producer_epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                return Err(ResponseError::InvalidTxnState)
            }
            TxnState::Ongoing if partitions.iter().all(|tp| self.partitions.contains(tp)) => {
                return Ok(None)
            }
            _ => {}
        }
        let mut next = self.successor(TxnState::Ongoing, now_ms);
        if self.state != TxnState::Ongoing {
            next.start_timestamp_ms = now_ms;
            next.partitions.clear();
        }
        next.partitions.extend(partitions.iter().cloned());
        Ok(Some(self.plan(next, Vec::new())))
    }

    /// The verify-only form of AddPartitionsToTxn v4+ (KIP-890 part 1), which partition
    /// leaders send before accepting transactional data: per partition, whether it is in the
    /// ongoing transaction of this producer.
    pub fn verify_partitions(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<Verified, ResponseError> {
        if self.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if self.producer_epoch != producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        // A partition is in the transaction from the durable add until its marker is
        // durable; one that is not gets TRANSACTION_ABORTABLE (KIP-890), so the producer
        // aborts rather than writes outside its transaction.
        Ok(partitions
            .iter()
            .map(|tp| {
                let verdict = if self.partitions.contains(tp) {
                    Ok(())
                } else {
                    Err(ResponseError::TransactionAbortable)
                };
                (tp.clone(), verdict)
            })
            .collect())
    }

    /// EndTxn. Ok(None) is a retry of a completed EndTxn, answered with success and no write.
    /// With transaction version 2 the epoch is bumped at every end, so the producer's next
    /// transaction runs at a new epoch; the response then carries [`Transition::next`]'s id
    /// and epoch (taken from `next_producer_id` when the epoch ran out).
    pub fn end_txn(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        result: TxnResult,
        coordinator_epoch: i32,
        now_ms: i64,
        new_producer_id: &mut dyn FnMut() -> Result<i64, ResponseError>,
    ) -> Result<Option<Transition>, ResponseError> {
        self.end_txn_as(
            self.client_transaction_version,
            producer_id,
            producer_epoch,
            result,
            coordinator_epoch,
            now_ms,
            new_producer_id,
        )
    }

    /// [`Self::end_txn`] for a client speaking `client_transaction_version`, which the
    /// EndTxn's own version tells (v5+: transaction version 2), as Kafka's
    /// `handleEndTransaction` takes it per request; the transaction records it.
    #[allow(clippy::too_many_arguments)]
    pub fn end_txn_as(
        &self,
        client_transaction_version: TransactionVersion,
        producer_id: i64,
        producer_epoch: i16,
        result: TxnResult,
        coordinator_epoch: i32,
        now_ms: i64,
        new_producer_id: &mut dyn FnMut() -> Result<i64, ResponseError>,
    ) -> Result<Option<Transition>, ResponseError> {
        let tv2 = client_transaction_version >= 2;
        // Transaction version 2 bumps the epoch at every end, so a retry of an EndTxn comes
        // with the epoch before the bump (Kafka's `endTxnEpochBumped`), or, when the bump ran
        // out of epochs, with the previous producer id at the last epoch.
        let retry_on_bump = tv2 && i32::from(self.producer_epoch) == i32::from(producer_epoch) + 1;
        let retry_on_overflow = tv2
            && self.previous_producer_id == producer_id
            && producer_epoch == MAX_USABLE_EPOCH
            && self.producer_epoch == 0;
        let valid_epoch = if tv2 {
            match self.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
                TxnState::CompleteCommit | TxnState::CompleteAbort => {
                    retry_on_bump || retry_on_overflow
                }
                _ => producer_epoch == self.producer_epoch,
            }
        } else {
            producer_epoch == self.producer_epoch
        };
        if self.producer_id != producer_id && !retry_on_overflow {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if !valid_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if self.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        match (self.state, result) {
            (TxnState::Ongoing, _) => {}
            (TxnState::CompleteCommit, TxnResult::Commit)
            | (TxnState::CompleteAbort, TxnResult::Abort) => return Ok(None),
            (TxnState::PrepareCommit, TxnResult::Commit)
            | (TxnState::PrepareAbort, TxnResult::Abort) => {
                return Err(ResponseError::ConcurrentTransactions)
            }
            (TxnState::PrepareEpochFence, _) => return Err(ResponseError::ConcurrentTransactions),
            _ => return Err(ResponseError::InvalidTxnState),
        }
        let state = match result {
            TxnResult::Commit => TxnState::PrepareCommit,
            TxnResult::Abort => TxnState::PrepareAbort,
        };
        let mut next = self.successor(state, now_ms);
        next.client_transaction_version = client_transaction_version;
        if tv2 {
            if is_epoch_exhausted(self.producer_epoch) {
                // The markers go out at the last epoch; the producer continues under a new id.
                next.next_producer_id = new_producer_id()?;
            }
            next.last_producer_epoch = self.producer_epoch;
            next.producer_epoch = self.producer_epoch.saturating_add(1);
        }
        let markers = next.markers(result, coordinator_epoch);
        Ok(Some(self.plan(next, markers)))
    }

    fn markers(&self, result: TxnResult, coordinator_epoch: i32) -> Vec<Marker> {
        self.partitions
            .iter()
            .map(|(topic, partition)| Marker {
                topic: topic.clone(),
                partition: *partition,
                producer_id: self.producer_id,
                producer_epoch: self.producer_epoch,
                coordinator_epoch,
                result,
            })
            .collect()
    }

    /// Every marker of a PrepareCommit / PrepareAbort is written: the transaction completes.
    pub fn complete_markers(&self, now_ms: i64) -> Result<Transition, ResponseError> {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return Err(ResponseError::InvalidTxnState),
        };
        if self.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let mut next = self.successor(state, now_ms);
        next.partitions.clear();
        if next.next_producer_id >= 0 {
            // The exhausted epoch of transaction version 2 rolls over to the new id.
            next.previous_producer_id = self.producer_id;
            next.producer_id = self.next_producer_id;
            next.next_producer_id = -1;
            next.producer_epoch = 0;
            next.last_producer_epoch = -1;
        }
        Ok(self.plan(next, Vec::new()))
    }

    /// The markers still owed by a PrepareCommit / PrepareAbort (after a load, or a retry).
    pub fn pending_markers(&self, coordinator_epoch: i32) -> Vec<Marker> {
        match self.state {
            TxnState::PrepareCommit => self.markers(TxnResult::Commit, coordinator_epoch),
            TxnState::PrepareAbort => self.markers(TxnResult::Abort, coordinator_epoch),
            _ => Vec::new(),
        }
    }

    /// Whether the ongoing transaction has outlived its timeout.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.pending.is_none()
            && now_ms.saturating_sub(self.start_timestamp_ms) > i64::from(self.timeout_ms)
    }

    /// `transactional.id.expiration.ms`: an idle id untouched for that long is removed, with a
    /// tombstone (Kafka's Dead state).
    pub fn expire(&self, expiration_ms: i64, now_ms: i64) -> Option<Transition> {
        if !self.state.is_idle()
            || self.pending.is_some()
            || now_ms.saturating_sub(self.last_update_timestamp_ms) < expiration_ms
        {
            return None;
        }
        let next = self.successor(TxnState::Dead, now_ms);
        Some(Transition {
            record: (self.transactional_id.clone(), None),
            next,
            markers: Vec::new(),
        })
    }
}

/// `transaction.timeout.ms` against `transaction.max.timeout.ms`.
pub fn check_timeout(timeout_ms: i32, max_timeout_ms: i32) -> Result<(), ResponseError> {
    if timeout_ms <= 0 || timeout_ms > max_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    Ok(())
}

/// InitProducerId for a transactional id seen for the first time: a new producer id at
/// epoch 0.
pub fn init_new(
    transactional_id: &str,
    timeout_ms: i32,
    max_timeout_ms: i32,
    client_transaction_version: TransactionVersion,
    now_ms: i64,
    new_producer_id: &mut dyn FnMut() -> Result<i64, ResponseError>,
) -> Result<(TxnMetadata, Transition), ResponseError> {
    check_timeout(timeout_ms, max_timeout_ms)?;
    let pid = new_producer_id()?;
    let fresh = TxnMetadata::new(
        transactional_id,
        pid,
        timeout_ms,
        client_transaction_version,
        now_ms,
    );
    let mut next = fresh.successor(TxnState::Empty, now_ms);
    next.producer_epoch = 0;
    let t = fresh.plan(next, Vec::new());
    Ok((fresh, t))
}

#[cfg(test)]
mod tests;
