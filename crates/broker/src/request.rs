//! From a frame to a response: read the header (strom-protocol), check the version against the
//! one API table, and hand the request to its handler through the registry
//! (`handlers::registry`), which decodes the body with the generated codec and frames the answer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, OnceLock};

use proto_kafka::protocol::Encodable;
use strom_protocol::zero_copy::FileRanges;
use strom_security::KafkaPrincipal;
use tokio::sync::watch;

/// Kept as paths of this crate for the handlers and tests that name them here.
pub use strom_protocol::api::{supported_range, SUPPORTED_APIS};
pub use strom_protocol::{encode_response, RequestError, ResponseFrame};

pub type PendingReply = Pin<Box<dyn Future<Output = Option<ResponseFrame>> + Send>>;

/// A handler's answer: ready now, or later (waiting for durability or data). `None` is no
/// response at all (a produce with acks=0).
pub enum Reply {
    Now(Option<ResponseFrame>),
    Later(PendingReply),
}

pub struct RequestContext {
    pub api: proto_kafka::messages::ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    /// The header's client id ("" when null): group member ids and DescribeGroups use it.
    pub client_id: String,
    pub info: Arc<ConnectionInfo>,
}

impl RequestContext {
    pub fn respond<R: Encodable>(&self, body: &R) -> Result<ResponseFrame, RequestError> {
        encode_response(self.api, self.version, self.correlation_id, body).map(ResponseFrame::Flat)
    }

    /// `respond`, as a reply ready now.
    pub fn reply_now<R: Encodable>(&self, body: &R) -> Result<Reply, RequestError> {
        Ok(Reply::Now(Some(self.respond(body)?)))
    }

    /// As `respond`, for a body whose byte fields (records) are placeholders of `ranges`: their
    /// bytes stay in the files.
    pub fn respond_with_files<R: Encodable>(
        &self,
        body: &R,
        ranges: FileRanges,
    ) -> Result<ResponseFrame, RequestError> {
        strom_protocol::encode_response_with_files(
            self.api,
            self.version,
            self.correlation_id,
            body,
            ranges,
        )
    }
}

pub struct ConnectionInfo {
    pub listener_name: Arc<str>,
    pub peer: SocketAddr,
    /// Ends this connection's waits early.
    pub cancel: WaitCancel,
    /// Set once, when SASL authentication succeeds (re-authentication may not change it,
    /// KIP-368); unset is User:ANONYMOUS. A `OnceLock` so every handler reads it without a
    /// lock. Read it with [`ConnectionInfo::principal`].
    pub authenticated: OnceLock<KafkaPrincipal>,
}

static ANONYMOUS: LazyLock<KafkaPrincipal> = LazyLock::new(KafkaPrincipal::anonymous);

impl ConnectionInfo {
    /// A connection with no principal yet (User:ANONYMOUS).
    pub fn new(listener_name: Arc<str>, peer: SocketAddr, cancel: WaitCancel) -> Self {
        ConnectionInfo {
            listener_name,
            peer,
            cancel,
            authenticated: OnceLock::new(),
        }
    }

    /// Who this connection is, for the authorizer: its authenticated principal, or
    /// User:ANONYMOUS (PLAINTEXT, or before SASL completes).
    pub fn principal(&self) -> &KafkaPrincipal {
        self.authenticated.get().unwrap_or(&ANONYMOUS)
    }

    /// Records the principal a SASL authentication (or a TLS client certificate) ended
    /// with; `Err` gives it back when one is already set.
    pub fn set_principal(&self, principal: KafkaPrincipal) -> Result<(), KafkaPrincipal> {
        self.authenticated.set(principal)
    }

    /// The client's address as ACL hosts name it.
    pub fn host(&self) -> String {
        self.peer.ip().to_string()
    }
}

/// Set when a connection's waits must end now: its peer has gone (no answer can reach it), or
/// the broker is shutting down (answer with what there is). A handler that parks selects on
/// `cancelled()` beside its own timeout.
#[derive(Clone, Debug)]
pub struct WaitCancel(watch::Receiver<bool>);

impl WaitCancel {
    pub fn new() -> (watch::Sender<bool>, WaitCancel) {
        let (tx, rx) = watch::channel(false);
        (tx, WaitCancel(rx))
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancelled, or once the connection that could cancel is gone.
    pub async fn cancelled(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}
