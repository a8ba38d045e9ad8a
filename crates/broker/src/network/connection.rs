//! One client connection. Requests are read and handled in order; a handler may answer later
//! (a produce waiting for fsync, a fetch waiting for data), and answers are written in request
//! order, as Kafka's protocol requires. Up to `queued.max.requests` answers may be pending,
//! so a pipelining producer's fsyncs overlap.
//!
//! A peer that has gone (end of stream, a reset) ends the connection at once: waits with no
//! effects of their own (parked fetches, joins waiting for a rebalance) end through
//! `WaitCancel`, work already begun (a produce's fsync) finishes, and nothing more is written.
//! Kafka closes a channel on end of stream the same way; a client that only half-closes is
//! treated as gone.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::frame::{read_frame, FrameError};
use super::zero_copy;
use crate::broker::Broker;
use crate::dispatch;
use crate::metrics::RequestPhase;
pub use crate::request::{ConnectionInfo, WaitCancel};
use crate::request::{Reply, ResponseFrame};

/// What the connection's reader reads ahead of the current frame.
const READ_AHEAD_BYTES: usize = 16 * 1024;

/// True once the peer has closed its side or reset the connection. Only looks: a peer with
/// bytes waiting is there (false), and those bytes stay for the frame reader.
async fn peer_closed(r: &mut OwnedReadHalf) -> bool {
    let mut probe = [0u8; 1];
    !matches!(r.peek(&mut probe).await, Ok(n) if n > 0)
}

/// A whole request frame, and when its last byte was read: the start of its queue time.
struct ReadFrame {
    bytes: BytesMut,
    read_at: Instant,
}

type FrameResult = Result<Option<ReadFrame>, FrameError>;

/// A request's answer once it is ready, with what its remaining phases are timed by.
struct Answer {
    frame: Option<ResponseFrame>,
    api: &'static str,
    ready_at: Instant,
}

type PendingAnswer = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// What the connection's reader and its writer share: setting `cancel` ends the waits of
/// this connection's requests, `peer_gone` says no answer can reach the peer.
struct Shared {
    cancel: watch::Sender<bool>,
    peer_gone: AtomicBool,
}

impl Shared {
    fn peer_has_gone(&self) {
        self.peer_gone.store(true, Ordering::Release);
        self.cancel.send_replace(true);
    }
}

pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    listener_name: Arc<str>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let buffers = super::listener::SocketBuffers::from_config(&broker.config);
    if let Err(e) = super::listener::configure_accepted(&stream, buffers) {
        debug!(%peer, error = %e, "cannot set socket options; keeping the OS's");
    }
    let (cancel_tx, cancel) = WaitCancel::new();
    let shared = Arc::new(Shared {
        cancel: cancel_tx,
        peer_gone: AtomicBool::new(false),
    });
    let info = Arc::new(ConnectionInfo::new(listener_name, peer, cancel));
    let (read_half, write_half) = stream.into_split();
    crate::metrics::connection_opened();

    // Frames are read by their own task: a read cut short by select! would lose bytes and
    // desynchronise the stream, whereas a channel receive can be dropped safely.
    let (frames_tx, frames) = mpsc::channel::<FrameResult>(1);
    let max_frame = broker.config.socket_request_max_bytes;
    let reader_task = tokio::spawn(read_frames(read_half, max_frame, frames_tx, shared.clone()));
    let (mut pending, mut write_half) =
        answer_in_order(&broker, &info, frames, write_half, shutdown, &shared).await;
    reader_task.abort();
    let _ = write_half.shutdown().await;
    drop(write_half);
    if !pending.is_empty() {
        // The write failed: the peer has gone. Its parked waits end now; work already begun
        // (a produce's fsync and high watermark) completes without holding the connection.
        shared.cancel.send_replace(true);
        tokio::spawn(async move { while pending.next().await.is_some() {} });
    }
    crate::metrics::connection_closed();
}

/// The reader task: frames in order into `frames`, until the stream ends or fails.
async fn read_frames(
    read_half: OwnedReadHalf,
    max_frame: usize,
    frames: mpsc::Sender<FrameResult>,
    shared: Arc<Shared>,
) {
    // Small: it batches the reads of small requests, while the body of a large one is
    // read past it, straight into the frame (see `read_frame`).
    let mut reader = BufReader::with_capacity(READ_AHEAD_BYTES, read_half);
    loop {
        let frame = read_frame(&mut reader, max_frame).await.map(|f| {
            f.map(|bytes| ReadFrame {
                bytes,
                read_at: Instant::now(),
            })
        });
        let last = !matches!(frame, Ok(Some(_)));
        if matches!(frame, Ok(None) | Err(FrameError::Io(_))) {
            shared.peer_has_gone();
        }
        // While the frame waits to be taken (the connection has `queued.max.requests`
        // answers pending, parked fetches perhaps), watch for the peer going, which
        // ends those waits. Frames already read are still handled, as Kafka handles
        // the receives of a closing channel.
        let send = frames.send(frame);
        tokio::pin!(send);
        let mut watching = !last;
        loop {
            tokio::select! {
                // The send first: with room in the channel it is done before any probe
                // costs a syscall.
                biased;
                sent = &mut send => {
                    if sent.is_err() {
                        return;
                    }
                    break;
                }
                closed = peer_closed(reader.get_mut()), if watching => {
                    if closed {
                        shared.peer_has_gone();
                    }
                    watching = false;
                }
            }
        }
        if last {
            return;
        }
    }
}

/// Handles frames as they come, up to `queued.max.requests` answers pending, and writes the
/// answers in request order, until reading has stopped and every answer is written (or a
/// write fails). Returns what is still pending then.
async fn answer_in_order(
    broker: &Arc<Broker>,
    info: &Arc<ConnectionInfo>,
    mut frames: mpsc::Receiver<FrameResult>,
    mut write_half: OwnedWriteHalf,
    mut shutdown: watch::Receiver<bool>,
    shared: &Shared,
) -> (FuturesOrdered<PendingAnswer>, OwnedWriteHalf) {
    let max_pending = broker.config.queued_max_requests;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let mut pending: FuturesOrdered<PendingAnswer> = FuturesOrdered::new();
    let mut reading = true;
    while reading || !pending.is_empty() {
        tokio::select! {
            frame = frames.recv(), if reading && pending.len() < max_pending => {
                match take_frame(broker, info, frame).await {
                    Some(reply) => {
                        pending.push_back(reply);
                        debug_assert!(pending.len() <= max_pending, "more answers pending than queued.max.requests");
                    }
                    None => reading = false,
                }
            }
            Some(answer) = pending.next(), if !pending.is_empty() => {
                let Answer { frame, api, ready_at } = answer;
                // No answer can reach a peer that has gone.
                if let Some(bytes) = frame.filter(|_| !shared.peer_gone.load(Ordering::Acquire)) {
                    let sending = Instant::now();
                    crate::metrics::request_phase(api, RequestPhase::ResponseQueue, sending - ready_at);
                    let written = write_all(&mut write_half, bytes).await;
                    crate::metrics::request_phase(api, RequestPhase::ResponseSend, sending.elapsed());
                    if let Err(e) = written {
                        if e.kind() == std::io::ErrorKind::UnexpectedEof {
                            // A segment shrank under a fetch whose size was already sent.
                            warn!(peer = %info.peer, error = %e, "closing connection: response cut short");
                        } else {
                            debug!(peer = %info.peer, error = %e, "connection write failed");
                        }
                        break;
                    }
                }
            }
            _ = shutdown.changed(), if reading => {
                // Finish what was asked, answer it (parked waits with what there is now),
                // then close.
                reading = false;
                shared.cancel.send_replace(true);
            }
            _ = tokio::time::sleep(idle), if reading && pending.is_empty() => {
                debug!(peer = %info.peer, "closing idle connection");
                reading = false;
            }
        }
    }
    (pending, write_half)
}

/// The API a frame names, for its phase timings (the frame layer guarantees its 8 bytes).
fn api_of(frame: &[u8]) -> &'static str {
    frame
        .get(..2)
        .map(|k| i16::from_be_bytes([k[0], k[1]]))
        .and_then(|k| proto_kafka::messages::ApiKey::try_from(k).ok())
        .map_or("Unknown", crate::metrics::api_name)
}

/// Hands one frame from the reader to the dispatcher: its pending answer, or `None` when
/// reading stops (end of stream, a bad frame, a refused request). Times the request's
/// phases as Kafka's RequestMetrics do: queued (read, not yet taken), local (the handler's
/// own work), remote (waiting for durability or data).
async fn take_frame(
    broker: &Arc<Broker>,
    info: &Arc<ConnectionInfo>,
    frame: Option<FrameResult>,
) -> Option<PendingAnswer> {
    match frame {
        Some(Ok(Some(ReadFrame { bytes, read_at }))) => {
            let api = api_of(&bytes);
            let taken = Instant::now();
            crate::metrics::request_phase(api, RequestPhase::Queue, taken - read_at);
            match dispatch::handle(broker, info, bytes).await {
                Ok(reply) => {
                    let handled = Instant::now();
                    crate::metrics::request_phase(api, RequestPhase::Local, handled - taken);
                    Some(answer(api, reply, handled))
                }
                Err(e) => {
                    crate::metrics::request_error(e.api_name());
                    info!(peer = %info.peer, error = %e, "closing connection: bad request");
                    None
                }
            }
        }
        Some(Ok(None)) | None => {
            debug!(peer = %info.peer, "peer closed the connection");
            None
        }
        Some(Err(FrameError::Io(e))) => {
            debug!(peer = %info.peer, error = %e, "connection read failed");
            None
        }
        Some(Err(e)) => {
            info!(peer = %info.peer, error = %e, "closing connection: bad frame");
            None
        }
    }
}

/// The answer of `reply`, timing its remote phase (zero for an answer ready at once).
fn answer(api: &'static str, reply: Reply, handled: Instant) -> PendingAnswer {
    match reply {
        Reply::Now(frame) => {
            crate::metrics::request_phase(api, RequestPhase::Remote, Duration::ZERO);
            Box::pin(std::future::ready(Answer {
                frame,
                api,
                ready_at: handled,
            }))
        }
        Reply::Later(fut) => Box::pin(async move {
            let frame = fut.await;
            let ready_at = Instant::now();
            crate::metrics::request_phase(api, RequestPhase::Remote, ready_at - handled);
            Answer {
                frame,
                api,
                ready_at,
            }
        }),
    }
}

async fn write_all(w: &mut OwnedWriteHalf, frame: ResponseFrame) -> std::io::Result<()> {
    crate::metrics::bytes_sent(frame.len());
    match frame {
        ResponseFrame::Flat(bytes) => w.write_all(&bytes).await,
        ResponseFrame::Pieces(pieces) => zero_copy::write_pieces(w.as_ref(), &pieces).await,
    }
}
