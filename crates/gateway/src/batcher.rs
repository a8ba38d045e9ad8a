//! Produce requests of all HTTP clients, gathered per partition: while one
//! ProduceRequest to a partition is in flight, records that arrive for it
//! queue, and go together in the next batch. Concurrent one-record requests
//! so share batches (and the broker's fsyncs) as a Kafka producer's records
//! do, without a linger delay when the gateway is quiet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strom_client::{Client, Compression, Error, ProduceRecord};
use tokio::sync::{mpsc, oneshot};

/// Payload bytes gathered into one batch at most (under the broker's
/// default message.max.bytes of 1 MiB, with room for record overhead).
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// A partition's sender task stops after this long without records.
const IDLE: Duration = Duration::from_secs(60);

type Reply = oneshot::Sender<Result<i64, Error>>;
struct Pending {
    records: Vec<ProduceRecord>,
    reply: Reply,
}

#[derive(Default)]
pub struct Batcher {
    senders: Mutex<HashMap<(String, i32), mpsc::UnboundedSender<Pending>>>,
}

fn payload(records: &[ProduceRecord]) -> usize {
    records.iter().map(|r| r.payload_len() + 32).sum()
}

impl Batcher {
    /// Produces `records` to one partition; the offset of the first.
    pub async fn produce(
        self: &Arc<Self>,
        client: &Arc<Client>,
        topic: &str,
        partition: i32,
        records: Vec<ProduceRecord>,
    ) -> Result<i64, Error> {
        let (tx, rx) = oneshot::channel();
        let mut pending = Pending { records, reply: tx };
        // A sender that just stopped refuses the record: start another.
        for _ in 0..2 {
            let sender = {
                let mut map = self
                    .senders
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                map.entry((topic.to_string(), partition))
                    .or_insert_with(|| {
                        let (stx, srx) = mpsc::unbounded_channel();
                        tokio::spawn(run(
                            Arc::clone(self),
                            Arc::clone(client),
                            topic.to_string(),
                            partition,
                            srx,
                        ));
                        stx
                    })
                    .clone()
            };
            match sender.send(pending) {
                Ok(()) => {
                    return rx.await.unwrap_or_else(|_| {
                        Err(Error::Other("the partition's sender stopped".into()))
                    })
                }
                Err(mpsc::error::SendError(back)) => {
                    pending = back;
                    self.senders
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&(topic.to_string(), partition));
                }
            }
        }
        Err(Error::Other("no sender for the partition".into()))
    }
}

async fn run(
    batcher: Arc<Batcher>,
    client: Arc<Client>,
    topic: String,
    partition: i32,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(_) => {
                    // Idle: leave the map, then answer what raced in.
                    batcher
                        .senders
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&(topic.clone(), partition));
                    rx.close();
                    match rx.recv().await {
                        Some(p) => p,
                        None => return,
                    }
                }
            },
        };
        let mut size = payload(&first.records);
        let mut group = vec![first];
        while size < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    let s = payload(&p.records);
                    if size + s > MAX_BATCH_BYTES {
                        carried = Some(p);
                        break;
                    }
                    size += s;
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let counts: Vec<usize> = group.iter().map(|p| p.records.len()).collect();
        let mut records = Vec::with_capacity(counts.iter().sum());
        let mut replies = Vec::with_capacity(group.len());
        for p in group {
            records.extend(p.records);
            replies.push(p.reply);
        }
        let result = client
            .produce_batches(&topic, vec![(partition, records)], -1, Compression::None)
            .await
            .and_then(|mut v| {
                v.pop()
                    .map(|(_, r)| r)
                    .unwrap_or_else(|| Err(Error::Other("no answer".into())))
            });
        let mut next = 0i64;
        for (reply, n) in replies.into_iter().zip(counts) {
            let _ = reply.send(result.clone().map(|base| base + next));
            next += n as i64;
        }
    }
}
