//! Listening sockets and the options of accepted ones, as Kafka's SocketServer sets them:
//! `socket.receive.buffer.bytes` on the listening socket before it binds (accepted sockets
//! inherit it, and a receive window above 64 KiB must be known when the handshake scales it),
//! `socket.send.buffer.bytes` on each accepted socket; -1 leaves the OS default.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The listen backlog tokio's `TcpListener::bind` uses, kept so start-up behaves as before.
const LISTEN_BACKLOG: u32 = 1024;

/// Socket buffer sizes in bytes; a negative size leaves the OS default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketBuffers {
    pub send_bytes: i32,
    pub receive_bytes: i32,
}

impl SocketBuffers {
    /// The OS defaults for both.
    pub const OS_DEFAULT: SocketBuffers = SocketBuffers {
        send_bytes: -1,
        receive_bytes: -1,
    };

    pub fn from_config(config: &crate::config::BrokerConfig) -> SocketBuffers {
        SocketBuffers {
            send_bytes: config.socket_send_buffer_bytes,
            receive_bytes: config.socket_receive_buffer_bytes,
        }
    }
}

/// Binds a listener on the first address `host:port` resolves to that can be bound.
pub async fn bind(host: &str, port: u16, buffers: SocketBuffers) -> io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match bind_addr(addr, buffers) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host}:{port} resolves to no address"),
        )
    }))
}

fn bind_addr(addr: SocketAddr, buffers: SocketBuffers) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio do on Unix: a restarted broker can bind while old connections linger in
    // TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if let Ok(bytes) = u32::try_from(buffers.receive_bytes) {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The options of an accepted client socket. Failures are not fatal: the connection works
/// with the OS's choices, as it did before they were set.
pub fn configure_accepted(stream: &TcpStream, buffers: SocketBuffers) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = socket2::SockRef::from(stream);
    // As Kafka's SocketServer: a peer that vanished without a FIN or a reset (a dead host)
    // is found by the kernel's keepalive probes instead of holding its slot forever.
    socket.set_keepalive(true)?;
    if let Ok(bytes) = usize::try_from(buffers.send_bytes) {
        socket.set_send_buffer_size(bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn accepted(buffers: SocketBuffers) -> (TcpStream, TcpStream) {
        let listener = bind("127.0.0.1", 0, buffers).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let server = server.unwrap().0;
        configure_accepted(&server, buffers).unwrap();
        (client.unwrap(), server)
    }

    /// What the kernel reports for a requested size: Linux doubles it for its bookkeeping.
    fn reported(requested: i32) -> usize {
        let requested = requested as usize;
        if cfg!(target_os = "linux") {
            2 * requested
        } else {
            requested
        }
    }

    #[tokio::test]
    async fn configured_buffer_sizes_are_on_the_accepted_socket() {
        let buffers = SocketBuffers {
            send_bytes: 48 * 1024,
            receive_bytes: 40 * 1024,
        };
        let (_client, server) = accepted(buffers).await;
        let socket = socket2::SockRef::from(&server);
        assert_eq!(
            socket.send_buffer_size().unwrap(),
            reported(buffers.send_bytes)
        );
        assert_eq!(
            socket.recv_buffer_size().unwrap(),
            reported(buffers.receive_bytes)
        );
        assert!(socket.keepalive().unwrap());
        assert!(server.nodelay().unwrap());
    }

    #[tokio::test]
    async fn minus_one_leaves_the_os_default() {
        let buffers = SocketBuffers {
            send_bytes: 48 * 1024,
            receive_bytes: 40 * 1024,
        };
        let (_c1, configured) = accepted(buffers).await;
        let (_c2, default) = accepted(SocketBuffers::OS_DEFAULT).await;
        let configured = socket2::SockRef::from(&configured);
        let default = socket2::SockRef::from(&default);
        // The OS default is whatever the kernel gives a socket nobody sized: not what was
        // asked for elsewhere.
        assert_ne!(
            default.send_buffer_size().unwrap(),
            configured.send_buffer_size().unwrap()
        );
        assert_ne!(
            default.recv_buffer_size().unwrap(),
            configured.recv_buffer_size().unwrap()
        );
    }
}
