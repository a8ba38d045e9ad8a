//! The gateway's listener: a bound on open connections (one more is answered
//! 429 and closed), and an idle timeout (`gateway.idle.timeout.ms`, Confluent's
//! `idle.timeout.ms`) that closes a connection when nothing was read from or
//! written to it for that long.
//!
//! Where the client is owed an answer, the timeout is answered 408 Request
//! Timeout in Confluent's error format before the close: a silent client that
//! never sent a request, a request sent half (its head or its body), a
//! request whose handler has not answered. An idle keep-alive connection
//! between requests, a response already under way and an upgraded WebSocket
//! are closed without one: a 408 there would race the client's next request,
//! or land inside a body or a WebSocket stream. [`track_exchanges`] tells the
//! connection which of these it is in.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

pub struct GatewayListener {
    inner: TcpListener,
    idle: Duration,
    /// TLS (`gateway.ssl.*`): each accepted socket's handshake runs on its
    /// own task, so a slow client never holds up the accept loop.
    tls: Option<Arc<strom_security::tls::TlsReloader>>,
    handshaken_tx: tokio::sync::mpsc::Sender<(IdleIo, std::net::SocketAddr)>,
    handshaken_rx: tokio::sync::mpsc::Receiver<(IdleIo, std::net::SocketAddr)>,
    max_connections: usize,
    connections: Arc<Semaphore>,
    /// Connections over the limit being answered 429 at once; beyond these
    /// (a flood) they are closed unanswered.
    refusing: Arc<Semaphore>,
}

/// Over-limit connections answered at once.
const MAX_REFUSING: usize = 64;
/// How long an over-limit connection may take to receive its 429.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a TLS handshake may take (as the broker's `ssl.handshake.timeout.ms` default).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl GatewayListener {
    pub fn new(inner: TcpListener, idle: Duration, max_connections: usize) -> GatewayListener {
        let (handshaken_tx, handshaken_rx) = tokio::sync::mpsc::channel(64);
        GatewayListener {
            inner,
            idle,
            tls: None,
            handshaken_tx,
            handshaken_rx,
            max_connections: max_connections.max(1),
            connections: Arc::new(Semaphore::new(max_connections.max(1))),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
        }
    }

    /// Serves HTTPS with the configuration `tls` keeps current.
    pub fn with_tls(mut self, tls: Option<Arc<strom_security::tls::TlsReloader>>) -> Self {
        self.tls = tls;
        self
    }
}

/// A connection's byte stream: plain TCP, or TLS over it.
pub enum GatewayStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for GatewayStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GatewayStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            GatewayStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GatewayStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            GatewayStream::Plain(s) => Pin::new(s).poll_write(cx, data),
            GatewayStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GatewayStream::Plain(s) => Pin::new(s).poll_flush(cx),
            GatewayStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            GatewayStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            GatewayStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The answer to a connection over the limit: 429 in Confluent's format,
/// and the connection closed.
fn too_many_connections(max: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "error_code": 429,
        "message": format!("the gateway has {max} connections open, its limit (gateway.max.connections)"),
    })
    .to_string();
    format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        crate::error::V2_JSON,
        body.len()
    )
    .into_bytes()
}

/// The answer to a connection that timed out owing an answer: 408 in
/// Confluent's format, and the connection closed.
fn request_timeout(idle: Duration) -> Vec<u8> {
    let body = serde_json::json!({
        "error_code": 408,
        "message": format!(
            "HTTP 408 Request Timeout: nothing was received for {} ms (gateway.idle.timeout.ms, or strom gateway --idle-timeout-ms)",
            idle.as_millis()
        ),
    })
    .to_string();
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        crate::error::V2_JSON,
        body.len()
    )
    .into_bytes()
}

/// Where a connection is in its HTTP exchanges, as the router sees them
/// ([`track_exchanges`]) and the socket under it ([`IdleIo`]): what an idle
/// timeout owes the client.
#[derive(Debug, Default)]
pub struct Exchanges {
    /// The client's address.
    pub peer: Option<std::net::SocketAddr>,
    /// The principals this connection counts for (gateway's per-principal
    /// connection limit), each counted once while the connection lasts.
    principals: std::sync::Mutex<
        Vec<(
            Arc<strom_security::KafkaPrincipal>,
            crate::principal_limits::Held,
        )>,
    >,
    /// Requests handed to a handler whose response body has not ended.
    open: AtomicUsize,
    /// The open request's handler has returned its response (its head is on
    /// its way, so nothing may be written in front of it).
    responded: AtomicBool,
    /// Any request has been handed to a handler on this connection.
    any: AtomicBool,
    /// Bytes were read after the last exchange ended: the head of the next
    /// request, or part of it.
    unanswered_bytes: AtomicBool,
    /// Switched to another protocol (a WebSocket): no HTTP after it.
    upgraded: AtomicBool,
}

impl Exchanges {
    /// Counts this connection for `principal` (once); false when the principal already
    /// holds `max` connections (the caller answers 429).
    pub(crate) fn count_for(
        &self,
        principal: &Arc<strom_security::KafkaPrincipal>,
        counts: &Arc<crate::principal_limits::PerPrincipal>,
        max: usize,
    ) -> bool {
        let mut held = self
            .principals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.iter().any(|(p, _)| p == principal) {
            return true;
        }
        match counts.try_take(principal, max) {
            Some(h) => {
                held.push((principal.clone(), h));
                true
            }
            None => false,
        }
    }

    fn begin(self: &Arc<Self>) -> ExchangeGuard {
        self.any.store(true, Ordering::Relaxed);
        self.responded.store(false, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        ExchangeGuard(self.clone())
    }

    /// Whether an idle timeout now owes the client a 408.
    fn owes_answer(&self) -> bool {
        if self.upgraded.load(Ordering::Relaxed) {
            return false;
        }
        if self.open.load(Ordering::Relaxed) > 0 {
            return !self.responded.load(Ordering::Relaxed);
        }
        self.unanswered_bytes.load(Ordering::Relaxed) || !self.any.load(Ordering::Relaxed)
    }
}

/// Ends its exchange when the response body is done (or dropped unsent).
struct ExchangeGuard(Arc<Exchanges>);

impl Drop for ExchangeGuard {
    fn drop(&mut self) {
        let x = &self.0;
        x.unanswered_bytes.store(false, Ordering::Relaxed);
        x.responded.store(false, Ordering::Relaxed);
        x.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's [`Exchanges`], handed to every request on it as its
/// connect info.
#[derive(Clone, Debug)]
pub struct ConnState(pub Arc<Exchanges>);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GatewayListener>>
    for ConnState
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, GatewayListener>) -> ConnState {
        ConnState(stream.io().exchanges.clone())
    }
}

/// Middleware: records each request's exchange on its connection, from the
/// handler's call to the end of its response body. Without connect info (a
/// router served some other way) it does nothing.
pub async fn track_exchanges(req: Request, next: Next) -> Response {
    let Some(ConnectInfo(ConnState(exchanges))) =
        req.extensions().get::<ConnectInfo<ConnState>>().cloned()
    else {
        return next.run(req).await;
    };
    let guard = exchanges.begin();
    let resp = next.run(req).await;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        exchanges.upgraded.store(true, Ordering::Relaxed);
    }
    exchanges.responded.store(true, Ordering::Relaxed);
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(GuardedBody {
            inner: body,
            _guard: guard,
        }),
    )
}

/// A response body that ends its exchange when it is dropped.
struct GuardedBody {
    inner: Body,
    _guard: ExchangeGuard,
}

impl HttpBody for GuardedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn refuse(mut stream: TcpStream, answer: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes: closing with unread
        // bytes would reset the connection and could lose the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

impl axum::serve::Listener for GatewayListener {
    type Io = IdleIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (IdleIo, std::net::SocketAddr) {
        loop {
            let accepted = tokio::select! {
                r = self.inner.accept() => r,
                Some(done) = self.handshaken_rx.recv() => return done,
            };
            match accepted {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    match self.connections.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let Some(tls) = &self.tls else {
                                return (
                                    IdleIo::new(
                                        GatewayStream::Plain(stream),
                                        addr,
                                        self.idle,
                                        permit,
                                    ),
                                    addr,
                                );
                            };
                            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
                            if let Err(e) = tls.maybe_reload() {
                                tracing::warn!(error = %e, "gateway: TLS files not reloaded");
                            }
                            let (tx, idle) = (self.handshaken_tx.clone(), self.idle);
                            tokio::spawn(async move {
                                let shaken = tokio::time::timeout(
                                    TLS_HANDSHAKE_TIMEOUT,
                                    acceptor.accept(stream),
                                )
                                .await;
                                match shaken {
                                    Ok(Ok(s)) => {
                                        let io = IdleIo::new(
                                            GatewayStream::Tls(Box::new(s)),
                                            addr,
                                            idle,
                                            permit,
                                        );
                                        let _ = tx.send((io, addr)).await;
                                    }
                                    Ok(Err(e)) => {
                                        tracing::debug!(%addr, error = %e, "gateway: TLS handshake failed")
                                    }
                                    Err(_) => {
                                        tracing::debug!(%addr, "gateway: TLS handshake timed out")
                                    }
                                }
                            });
                            continue;
                        }
                        Err(_) => {
                            if let Ok(slot) = self.refusing.clone().try_acquire_owned() {
                                let answer = too_many_connections(self.max_connections);
                                tokio::spawn(async move {
                                    refuse(stream, answer).await;
                                    drop(slot);
                                });
                            }
                            // Else dropped: closed unanswered.
                        }
                    }
                }
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::debug!(error = %e, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

pub struct IdleIo {
    inner: GatewayStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    exchanges: Arc<Exchanges>,
    /// The idle time ran out: nothing more is read or written.
    timed_out: bool,
    _permit: OwnedSemaphorePermit,
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "idle connection closed")
}

impl IdleIo {
    fn new(
        inner: GatewayStream,
        peer: std::net::SocketAddr,
        idle: Duration,
        permit: OwnedSemaphorePermit,
    ) -> IdleIo {
        IdleIo {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            exchanges: Arc::new(Exchanges {
                peer: Some(peer),
                ..Exchanges::default()
            }),
            timed_out: false,
            _permit: permit,
        }
    }

    fn touch(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// While the socket has nothing to do: an error once the idle time is up.
    /// A read that times out owing the client an answer sends the 408 first.
    fn check_idle(&mut self, cx: &mut Context<'_>, reading: bool) -> Poll<io::Result<()>> {
        if self.timed_out {
            return Poll::Ready(Err(idle_error()));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timed_out = true;
                if reading && self.exchanges.owes_answer() {
                    // Nothing else is being written (the client owes the next
                    // bytes), so the small answer fits the socket's buffer;
                    // if it did not, the close alone is the answer.
                    // On TLS the answer would need the session's framing, which
                    // only a poll of the stream writes: there the close is the answer.
                    if let GatewayStream::Plain(s) = &self.inner {
                        let _ = s.try_write(&request_timeout(self.idle));
                    }
                }
                Poll::Ready(Err(idle_error()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(idle_error()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.touch();
                    this.exchanges
                        .unanswered_bytes
                        .store(true, Ordering::Relaxed);
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx, true),
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Err(idle_error()));
        }
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match this.check_idle(cx, false) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const IDLE: Duration = Duration::from_millis(300);

    /// A gateway with a short idle timeout, in front of no cluster (the
    /// requests used here never reach one).
    async fn gateway() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = crate::GatewayConfig::new("127.0.0.1:1");
        config.idle_timeout = IDLE;
        tokio::spawn(crate::serve(listener, config, std::future::pending()));
        addr
    }

    /// Everything the gateway sends until it closes, and how long that took.
    async fn until_closed(s: &mut TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        assert!(
            read.is_ok(),
            "not closed: {}",
            String::from_utf8_lossy(&out)
        );
        (
            String::from_utf8_lossy(&out).into_owned(),
            started.elapsed(),
        )
    }

    fn assert_408(text: &str) {
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
        assert!(text.contains("connection: close"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error_code"], 408, "{text}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("gateway.idle.timeout.ms"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_silent_connection_is_answered_408() {
        let mut s = TcpStream::connect(gateway().await).await.unwrap();
        let (text, took) = until_closed(&mut s).await;
        assert_408(&text);
        assert!(took >= IDLE - Duration::from_millis(50), "{took:?}");
    }

    #[tokio::test]
    async fn half_a_request_head_is_answered_408() {
        let mut s = TcpStream::connect(gateway().await).await.unwrap();
        s.write_all(b"GET /topics HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        assert_408(&until_closed(&mut s).await.0);
    }

    #[tokio::test]
    async fn half_a_request_body_is_answered_408() {
        let mut s = TcpStream::connect(gateway().await).await.unwrap();
        s.write_all(
            b"POST /consumers/g HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/vnd.kafka.v2+json\r\nContent-Length: 40\r\n\r\n{\"name\"",
        )
        .await
        .unwrap();
        let text = until_closed(&mut s).await.0;
        assert_408(&text);
        // Only the 408: nothing the handler made of the cut body follows it.
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_without_an_answer() {
        let mut s = TcpStream::connect(gateway().await).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (text, _) = until_closed(&mut s).await;
        // The answer to the request, then the close: no 408 that the client
        // could take for the answer to its next request.
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
        // And a second request after one answered gets its own 200.
        let mut s = TcpStream::connect(gateway().await).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (text, _) = until_closed(&mut s).await;
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        assert!(!text.contains("408"), "{text}");
    }

    #[test]
    fn what_a_timeout_owes() {
        let x = Arc::new(Exchanges::default());
        assert!(x.owes_answer(), "a connection that never sent a request");
        let guard = x.begin();
        assert!(x.owes_answer(), "a request not yet answered");
        x.responded.store(true, Ordering::Relaxed);
        assert!(!x.owes_answer(), "a response under way");
        drop(guard);
        assert!(!x.owes_answer(), "between requests");
        x.unanswered_bytes.store(true, Ordering::Relaxed);
        assert!(x.owes_answer(), "the next request's head, in part");
        x.upgraded.store(true, Ordering::Relaxed);
        assert!(!x.owes_answer(), "a WebSocket");
    }
}
