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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::task::{Context, Poll};

use strom_security::{KafkaPrincipal, SecurityProtocol};
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::frame::{read_frame_limited, FrameError};
use super::sasl::{SaslSession, Verdict};
use super::security::ListenerSecurity;
use super::zero_copy;
use crate::broker::Broker;
use crate::dispatch;
use crate::metrics::RequestPhase;
pub use crate::request::{ConnectionInfo, WaitCancel};
use crate::request::{Reply, ResponseFrame};

/// What the connection's reader reads ahead of the current frame.
const READ_AHEAD_BYTES: usize = 16 * 1024;

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// The connection's read side: the socket itself, or the TLS stream over it.
enum ReadSide {
    Tcp(OwnedReadHalf),
    Tls(TlsRead),
}

/// The most a probe of a TLS stream reads ahead (one TLS record's plaintext at most).
const TLS_PROBE_BYTES: usize = 16 * 1024;

/// A TLS stream's read half that can look for its peer's going. TLS cannot be peeked (the
/// bytes waiting in the socket may be a record that is not a close), so a probe reads the
/// next plaintext; what it read waits in `ahead` and is served first, so the frame reader
/// sees the stream unchanged.
struct TlsRead {
    inner: tokio::io::ReadHalf<TlsStream>,
    ahead: BytesMut,
}

impl TlsRead {
    fn new(inner: tokio::io::ReadHalf<TlsStream>) -> Self {
        TlsRead {
            inner,
            ahead: BytesMut::new(),
        }
    }

    /// Ready(true) once the peer has closed (close_notify or end of stream) or the stream
    /// failed; Ready(false) when plaintext arrived, kept for the reader. Cancel-safe: what a
    /// read gives is kept within the same poll.
    fn poll_probe(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if !self.ahead.is_empty() {
            return Poll::Ready(false);
        }
        let mut space = [0u8; TLS_PROBE_BYTES];
        let mut buf = ReadBuf::new(&mut space);
        match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(true),
            Poll::Ready(Ok(())) => {
                self.ahead.extend_from_slice(buf.filled());
                Poll::Ready(false)
            }
            Poll::Ready(Err(e)) => {
                debug!(error = %e, "TLS read failed while a request waited");
                Poll::Ready(true)
            }
        }
    }
}

impl AsyncRead for TlsRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.ahead.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.ahead.len().min(buf.remaining());
        buf.put_slice(&this.ahead.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReadSide::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadSide::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The write side. Responses with file pieces go out with sendfile on a plain socket, and
/// through the TLS stream (read, encrypted, written) on a TLS one.
enum WriteSide {
    Tcp(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream>),
}

impl WriteSide {
    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            WriteSide::Tcp(w) => w.shutdown().await,
            WriteSide::Tls(w) => w.shutdown().await,
        }
    }
}

/// True once the peer has closed its side or reset the connection. Only looks: a peer with
/// bytes waiting is there (false), and those bytes stay for the frame reader (on TLS, read
/// ahead into [`TlsRead`]).
async fn peer_closed(r: &mut ReadSide) -> bool {
    match r {
        ReadSide::Tcp(r) => {
            let mut probe = [0u8; 1];
            !matches!(r.peek(&mut probe).await, Ok(n) if n > 0)
        }
        ReadSide::Tls(r) => std::future::poll_fn(|cx| r.poll_probe(cx)).await,
    }
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
    /// The last answer is a refusal the client must be able to read (a failed SASL
    /// authentication): the close drains what the client still sends until it closes (or a
    /// second passes) and only then sends FIN, since closing a socket with unread bytes
    /// sends RST, which can destroy the answer in the client's receive queue before it
    /// reads it, and a FIN arriving with the answer is taken for a lost connection by
    /// clients that stop at the end of the stream before looking at what came with it.
    linger: AtomicBool,
}

impl Shared {
    fn peer_has_gone(&self) {
        self.peer_gone.store(true, Ordering::Release);
        self.cancel.send_replace(true);
    }
}

/// Serves a connection of a PLAINTEXT listener.
pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    listener_name: Arc<str>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let security = Arc::new(ListenerSecurity::plaintext());
    serve_secured(broker, stream, listener_name, security, peer, shutdown).await
}

/// The TLS handshake of a new connection, bounded in time (`ssl.handshake.timeout.ms`); its
/// bytes are bounded by rustls, which refuses records and handshake messages beyond TLS's
/// sizes. Returns the stream and the principal of the client certificate.
async fn tls_handshake(
    security: &ListenerSecurity,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsStream, KafkaPrincipal)> {
    let tls = security.tls.as_ref()?;
    tls.maybe_reload();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.reloader.current());
    let stream = match tokio::time::timeout(tls.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            info!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            info!(%peer, timeout_ms = tls.handshake_timeout.as_millis() as u64, "TLS handshake timed out");
            return None;
        }
    };
    let certs = stream.get_ref().1.peer_certificates();
    let principal = match strom_security::tls::principal_of_peer(certs, &tls.mapper) {
        Ok(p) => p,
        Err(e) => {
            info!(%peer, error = %e, "closing TLS connection: cannot map its certificate to a principal");
            return None;
        }
    };
    Some((stream, principal))
}

/// Serves a connection of a listener of any security protocol: TLS first where it applies,
/// then the frames, through SASL where it applies.
pub async fn serve_secured(
    broker: Arc<Broker>,
    stream: TcpStream,
    listener_name: Arc<str>,
    security: Arc<ListenerSecurity>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let buffers = super::listener::SocketBuffers::from_config(&broker.config);
    if let Err(e) = super::listener::configure_accepted(&stream, buffers) {
        debug!(%peer, error = %e, "cannot set socket options; keeping the OS's");
    }
    let (read_half, write_half, principal) = if security.protocol.uses_tls() {
        let Some((tls, principal)) = tls_handshake(&security, stream, peer).await else {
            return;
        };
        let (r, w) = tokio::io::split(tls);
        (ReadSide::Tls(TlsRead::new(r)), WriteSide::Tls(w), principal)
    } else {
        let (r, w) = stream.into_split();
        (
            ReadSide::Tcp(r),
            WriteSide::Tcp(w),
            KafkaPrincipal::anonymous(),
        )
    };
    if security.protocol == SecurityProtocol::Ssl {
        info!(%peer, listener = %listener_name, %principal, "TLS connection authenticated");
    }
    let (cancel_tx, cancel) = WaitCancel::new();
    let shared = Arc::new(Shared {
        cancel: cancel_tx,
        peer_gone: AtomicBool::new(false),
        linger: AtomicBool::new(false),
    });
    let info = Arc::new(ConnectionInfo::new(listener_name, peer, cancel));
    // On SASL_SSL the SASL user is the principal, whatever certificate the client showed
    // (Kafka's DefaultKafkaPrincipalBuilder).
    if security.protocol == SecurityProtocol::Ssl && principal != KafkaPrincipal::anonymous() {
        // A fresh OnceLock: this cannot be set already.
        let _ = info.set_principal(principal);
    }
    crate::metrics::connection_opened();

    let max_frame = broker.config.socket_request_max_bytes;
    let sasl = security
        .sasl
        .as_ref()
        .map(|setup| SaslSession::new(setup.clone(), peer.ip()));
    let frame_limit = Arc::new(AtomicUsize::new(
        sasl.as_ref()
            .map_or(max_frame, |s| s.max_frame_bytes(max_frame)),
    ));
    let mut session = Session {
        info,
        sasl,
        frame_limit: frame_limit.clone(),
        max_frame,
    };

    // Frames are read by their own task: a read cut short by select! would lose bytes and
    // desynchronise the stream, whereas a channel receive can be dropped safely.
    let (frames_tx, frames) = mpsc::channel::<FrameResult>(1);
    let reader_task = tokio::spawn(read_frames(
        read_half,
        frame_limit,
        frames_tx,
        shared.clone(),
    ));
    let (mut pending, mut write_half) =
        answer_in_order(&broker, &mut session, frames, write_half, shutdown, &shared).await;
    if shared.linger.load(Ordering::Acquire) {
        // The refusal is written; the FIN waits until the client, having read it, closes
        // (the reader drains until then), bounded. A FIN right behind the answer let
        // kafka-python see the end of the stream in the same read and drop the answer
        // unread ("socket disconnected").
        let mut reader_task = reader_task;
        if tokio::time::timeout(LINGER_AFTER_REFUSAL, &mut reader_task)
            .await
            .is_err()
        {
            reader_task.abort();
        }
        let _ = write_half.shutdown().await;
    } else {
        reader_task.abort();
        let _ = write_half.shutdown().await;
    }
    drop(write_half);
    if !pending.is_empty() {
        // The write failed: the peer has gone. Its parked waits end now; work already begun
        // (a produce's fsync and high watermark) completes without holding the connection.
        shared.cancel.send_replace(true);
        tokio::spawn(async move { while pending.next().await.is_some() {} });
    }
    crate::metrics::connection_closed();
}

/// What a connection knows of its client, which authentication changes.
struct Session {
    info: Arc<ConnectionInfo>,
    sasl: Option<SaslSession>,
    /// The largest frame the reader takes now.
    frame_limit: Arc<AtomicUsize>,
    max_frame: usize,
}

impl Session {
    /// A SASL exchange ended in `principal`: requests from now on carry it. A
    /// re-authentication ends in the same principal (the SASL session checks), so the one
    /// already set stays.
    fn authenticated(&mut self, principal: KafkaPrincipal) {
        if self.info.set_principal(principal.clone()).is_ok() {
            info!(peer = %self.info.peer, listener = %self.info.listener_name, %principal, "SASL authentication succeeded");
        }
        self.frame_limit.store(self.max_frame, Ordering::Release);
    }
}

/// The reader task: frames in order into `frames`, until the stream ends or fails.
/// How long a connection closing after a refusal waits for its client to close first.
const LINGER_AFTER_REFUSAL: Duration = Duration::from_secs(1);
/// The most a closing connection reads and drops before it closes anyway.
const DRAIN_MAX_BYTES: usize = 1 << 20;

async fn drain<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) {
    let mut scratch = [0u8; 8192];
    let mut drained = 0usize;
    while drained < DRAIN_MAX_BYTES {
        match tokio::io::AsyncReadExt::read(reader, &mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

async fn read_frames(
    read_half: ReadSide,
    max_frame: Arc<AtomicUsize>,
    frames: mpsc::Sender<FrameResult>,
    shared: Arc<Shared>,
) {
    // Small: it batches the reads of small requests, while the body of a large one is
    // read past it, straight into the frame (see `read_frame`).
    let mut reader = BufReader::with_capacity(READ_AHEAD_BYTES, read_half);
    loop {
        let limit = || max_frame.load(Ordering::Acquire);
        let frame = read_frame_limited(&mut reader, limit).await.map(|f| {
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
                        // The connection is closing: what the client still sends is read
                        // and dropped until it closes (see `Shared::linger`).
                        drain(&mut reader).await;
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
    session: &mut Session,
    mut frames: mpsc::Receiver<FrameResult>,
    mut write_half: WriteSide,
    mut shutdown: watch::Receiver<bool>,
    shared: &Shared,
) -> (FuturesOrdered<PendingAnswer>, WriteSide) {
    let max_pending = broker.config.queued_max_requests;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let mut pending: FuturesOrdered<PendingAnswer> = FuturesOrdered::new();
    let mut reading = true;
    while reading || !pending.is_empty() {
        tokio::select! {
            frame = frames.recv(), if reading && pending.len() < max_pending => {
                match take_frame(broker, session, frame).await {
                    Taken::Answer(reply) => {
                        pending.push_back(reply);
                        debug_assert!(pending.len() <= max_pending, "more answers pending than queued.max.requests");
                    }
                    Taken::Last(reply) => {
                        pending.push_back(reply);
                        reading = false;
                        shared.linger.store(true, Ordering::Release);
                    }
                    Taken::Stop => reading = false,
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
                            warn!(peer = %session.info.peer, error = %e, "closing connection: response cut short");
                        } else {
                            debug!(peer = %session.info.peer, error = %e, "connection write failed");
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
                debug!(peer = %session.info.peer, "closing idle connection");
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
    session: &mut Session,
    frame: Option<FrameResult>,
) -> Taken {
    match frame {
        Some(Ok(Some(ReadFrame { bytes, read_at }))) => {
            let api = api_of(&bytes);
            let bytes = match session.sasl.as_mut() {
                None => bytes,
                Some(sasl) => {
                    let (verdict, principal) = sasl.on_frame_fetching_keys(bytes).await;
                    if let Some(p) = principal {
                        session.authenticated(p);
                    }
                    match verdict {
                        Verdict::Dispatch(bytes) => bytes,
                        Verdict::Answer(frame) => {
                            return Taken::Answer(answer(
                                api,
                                Reply::Now(Some(frame)),
                                Instant::now(),
                            ))
                        }
                        Verdict::Fail {
                            frame,
                            delay,
                            reason,
                        } => {
                            info!(peer = %session.info.peer, listener = %session.info.listener_name, %reason, "SASL authentication failed; closing the connection");
                            let later: crate::request::PendingReply = Box::pin(async move {
                                tokio::time::sleep(delay).await;
                                frame
                            });
                            return Taken::Last(answer(api, Reply::Later(later), Instant::now()));
                        }
                        Verdict::Close(reason) => {
                            info!(peer = %session.info.peer, %reason, "closing connection");
                            return Taken::Stop;
                        }
                    }
                }
            };
            let info = &session.info;
            let taken = Instant::now();
            crate::metrics::request_phase(api, RequestPhase::Queue, taken - read_at);
            match dispatch::handle(broker, info, bytes).await {
                Ok(reply) => {
                    let handled = Instant::now();
                    crate::metrics::request_phase(api, RequestPhase::Local, handled - taken);
                    Taken::Answer(answer(api, reply, handled))
                }
                Err(e) => {
                    crate::metrics::request_error(e.api_name());
                    info!(peer = %info.peer, error = %e, "closing connection: bad request");
                    Taken::Stop
                }
            }
        }
        Some(Ok(None)) | None => {
            debug!(peer = %session.info.peer, "peer closed the connection");
            Taken::Stop
        }
        Some(Err(FrameError::Io(e))) => {
            debug!(peer = %session.info.peer, error = %e, "connection read failed");
            Taken::Stop
        }
        Some(Err(e)) => {
            info!(peer = %session.info.peer, error = %e, "closing connection: bad frame");
            Taken::Stop
        }
    }
}

/// What taking a frame gave.
enum Taken {
    Answer(PendingAnswer),
    /// Answer this, then stop reading (a failed authentication).
    Last(PendingAnswer),
    Stop,
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

async fn write_all(w: &mut WriteSide, frame: ResponseFrame) -> std::io::Result<()> {
    crate::metrics::bytes_sent(frame.len());
    match (w, frame) {
        (WriteSide::Tcp(w), ResponseFrame::Flat(bytes)) => w.write_all(&bytes).await,
        (WriteSide::Tcp(w), ResponseFrame::Pieces(pieces)) => {
            zero_copy::write_pieces(w.as_ref(), &pieces).await
        }
        (WriteSide::Tls(w), ResponseFrame::Flat(bytes)) => {
            w.write_all(&bytes).await?;
            w.flush().await
        }
        (WriteSide::Tls(w), ResponseFrame::Pieces(pieces)) => {
            zero_copy::write_pieces_through(w, &pieces).await?;
            w.flush().await
        }
    }
}
