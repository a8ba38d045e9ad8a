//! One client connection. Requests are read and handled in order; a handler may answer later
//! (a produce waiting for fsync, a fetch waiting for data), and answers are written in request
//! order, as Kafka's protocol requires. Up to `queued.max.requests` answers may be pending,
//! so a pipelining producer's fsyncs overlap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::frame::{read_frame, FrameError};
use super::zero_copy;
use crate::broker::Broker;
use crate::request::{self, Reply, ResponseFrame};

/// What the connection's reader reads ahead of the current frame.
const READ_AHEAD_BYTES: usize = 16 * 1024;

pub struct ConnectionInfo {
    pub listener_name: Arc<str>,
    pub peer: SocketAddr,
}

pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    info: ConnectionInfo,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (read_half, mut write_half) = stream.into_split();
    let max_frame = broker.config.socket_request_max_bytes;
    let max_pending = broker.config.queued_max_requests;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let info = Arc::new(info);
    crate::metrics::connection_opened();

    // Frames are read by their own task: a read cut short by select! would lose bytes and
    // desynchronise the stream, whereas a channel receive can be dropped safely.
    let (frames_tx, mut frames) = mpsc::channel::<Result<Option<BytesMut>, FrameError>>(1);
    let reader_task = tokio::spawn(async move {
        // Small: it batches the reads of small requests, while the body of a large one is
        // read past it, straight into the frame (see `read_frame`).
        let mut reader = BufReader::with_capacity(READ_AHEAD_BYTES, read_half);
        loop {
            let frame = read_frame(&mut reader, max_frame).await;
            let last = !matches!(frame, Ok(Some(_)));
            if frames_tx.send(frame).await.is_err() || last {
                break;
            }
        }
    });

    let mut pending: FuturesOrdered<request::PendingReply> = FuturesOrdered::new();
    let mut reading = true;
    loop {
        if !reading && pending.is_empty() {
            break;
        }
        tokio::select! {
            frame = frames.recv(), if reading && pending.len() < max_pending => {
                match frame {
                    Some(Ok(Some(frame))) => match request::handle(&broker, &info, frame).await {
                        Ok(Reply::Now(bytes)) => pending.push_back(Box::pin(async move { bytes })),
                        Ok(Reply::Later(fut)) => pending.push_back(fut),
                        Err(e) => {
                            crate::metrics::request_error(e.api_name());
                            info!(peer = %info.peer, error = %e, "closing connection: bad request");
                            reading = false;
                        }
                    },
                    Some(Ok(None)) | None => reading = false,
                    Some(Err(FrameError::Io(e))) => {
                        debug!(peer = %info.peer, error = %e, "connection read failed");
                        reading = false;
                    }
                    Some(Err(e)) => {
                        info!(peer = %info.peer, error = %e, "closing connection: bad frame");
                        reading = false;
                    }
                }
            }
            Some(reply) = pending.next(), if !pending.is_empty() => {
                if let Some(bytes) = reply {
                    if let Err(e) = write_all(&mut write_half, bytes).await {
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
                // Finish what was asked, answer it, then close.
                reading = false;
            }
            _ = tokio::time::sleep(idle), if reading && pending.is_empty() => {
                debug!(peer = %info.peer, "closing idle connection");
                reading = false;
            }
        }
    }
    reader_task.abort();
    let _ = write_half.shutdown().await;
    crate::metrics::connection_closed();
}

async fn write_all(w: &mut OwnedWriteHalf, frame: ResponseFrame) -> std::io::Result<()> {
    crate::metrics::bytes_sent(frame.len());
    match frame {
        ResponseFrame::Flat(bytes) => w.write_all(&bytes).await,
        ResponseFrame::Pieces(pieces) => zero_copy::write_pieces(w.as_ref(), &pieces).await,
    }
}
