//! The gateway's listener: a bound on open connections (one more is answered
//! 429 and closed), and an idle timeout
//! that closes a connection when nothing was read from or written to it for
//! that long (an idle keep-alive connection, a request sent half, a silent
//! client).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

pub struct GatewayListener {
    inner: TcpListener,
    idle: Duration,
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

impl GatewayListener {
    pub fn new(inner: TcpListener, idle: Duration, max_connections: usize) -> GatewayListener {
        GatewayListener {
            inner,
            idle,
            max_connections: max_connections.max(1),
            connections: Arc::new(Semaphore::new(max_connections.max(1))),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
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
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    match self.connections.clone().try_acquire_owned() {
                        Ok(permit) => return (IdleIo::new(stream, self.idle, permit), addr),
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
    inner: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl IdleIo {
    fn new(inner: TcpStream, idle: Duration, permit: OwnedSemaphorePermit) -> IdleIo {
        IdleIo {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _permit: permit,
        }
    }

    fn touch(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// While the socket has nothing to do: an error once the idle time is up.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle connection closed",
            ))),
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
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx),
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
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match this.check_idle(cx) {
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
