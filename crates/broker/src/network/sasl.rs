//! SASL on a connection of a SASL_PLAINTEXT or SASL_SSL listener, as Kafka's
//! `SaslServerAuthenticator`: until the client has authenticated only ApiVersions,
//! SaslHandshake and SaslAuthenticate are served (anything else closes the connection);
//! SaslHandshake v0 is followed by raw SASL tokens in bare size-prefixed frames, v1 by
//! SaslAuthenticate requests. A failed authentication is answered after
//! `connection.failed.authentication.delay.ms` and closes the connection; an address with
//! too many recent failures is refused. A session that has lived `connections.max.reauth.ms`
//! (or past its credential's expiry) must re-authenticate (KIP-368) before anything else is
//! served, and keeps its principal.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use proto_kafka::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use proto_kafka::protocol::{Encodable, StrBytes};
use strom_protocol::header::{decode_body, decode_header, RequestPrefix};
use strom_protocol::{encode_response, ResponseFrame};
use strom_security::auth_failures::Admission;
use strom_security::sasl::{
    ensure_principal_unchanged, handshake, session_lifetime_ms, SaslError, SaslMechanism,
    SaslServer, SaslStep, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED,
};
use strom_security::KafkaPrincipal;

use super::security::SaslSetup;

/// What the connection does with a frame.
pub enum Verdict {
    /// Hand it to the dispatcher: the session is authenticated, or it is ApiVersions.
    Dispatch(BytesMut),
    /// Answer with this frame and go on reading.
    Answer(ResponseFrame),
    /// Answer (if there is an answer) after `delay`, then close.
    Fail {
        frame: Option<ResponseFrame>,
        delay: Duration,
        reason: String,
    },
    /// Close at once, answering nothing.
    Close(String),
}

enum State {
    /// Waiting for SaslHandshake (the first one, or a re-authentication's).
    Handshake,
    /// An exchange under way; `raw_tokens` after a v0 handshake.
    Exchange {
        server: SaslServer,
        raw_tokens: bool,
    },
    Authenticated,
}

pub struct SaslSession {
    setup: Arc<SaslSetup>,
    peer_ip: IpAddr,
    state: State,
    /// Set once authenticated; a re-authentication must end in the same one.
    principal: Option<KafkaPrincipal>,
    /// When the session stops (KIP-368), in ms since the epoch.
    expires_at_ms: Option<u64>,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn respond<R: Encodable>(prefix: &RequestPrefix, body: &R) -> Result<ResponseFrame, String> {
    encode_response(prefix.api, prefix.version, prefix.correlation_id, body)
        .map(ResponseFrame::Flat)
        .map_err(|e| e.to_string())
}

/// A raw SASL token as a v0 exchange sends it: size-prefixed, no Kafka header.
fn raw_token(bytes: &[u8]) -> Result<ResponseFrame, String> {
    let size = i32::try_from(bytes.len()).map_err(|_| "a SASL token too large".to_string())?;
    let mut buf = BytesMut::with_capacity(4 + bytes.len());
    buf.put_i32(size);
    buf.put_slice(bytes);
    Ok(ResponseFrame::Flat(buf))
}

impl SaslSession {
    pub fn new(setup: Arc<SaslSetup>, peer_ip: IpAddr) -> Self {
        SaslSession {
            setup,
            peer_ip,
            state: State::Handshake,
            principal: None,
            expires_at_ms: None,
        }
    }

    /// Whether requests other than the SASL ones are served now.
    pub fn is_authenticated(&self) -> bool {
        self.principal.is_some() && !self.expired(now_ms())
    }

    fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    /// The largest frame to read next: Kafka's `sasl.server.max.receive.size` before the
    /// client has authenticated.
    pub fn max_frame_bytes(&self, authenticated_max: usize) -> usize {
        if self.principal.is_some() {
            authenticated_max
        } else {
            self.setup.max_receive_bytes.min(authenticated_max)
        }
    }

    /// The `kid` of an OAUTHBEARER token the exchange just refused for want of its key.
    fn unknown_jwks_kid(&self) -> Option<String> {
        match &self.state {
            State::Exchange { server, .. } => server.unknown_jwks_kid().map(str::to_string),
            _ => None,
        }
    }

    /// [`SaslSession::on_frame`], except that an OAUTHBEARER token refused because the JWKS
    /// has no key for its `kid` waits for the key set to be fetched early (when the rules of
    /// [`super::jwks`] allow) and is then checked again, as if it came first: a key the
    /// identity provider just rotated in is taken without waiting for the refresh interval.
    pub async fn on_frame_fetching_keys(
        &mut self,
        frame: BytesMut,
    ) -> (Verdict, Option<KafkaPrincipal>) {
        let oauth = matches!(&self.state, State::Exchange { server, .. }
            if server.mechanism() == SaslMechanism::OAuthBearer && server.unknown_jwks_kid().is_none());
        let again = oauth.then(|| frame.clone());
        let first = self.on_frame(frame);
        let (Some(frame), Some(kid), Some(jwks)) =
            (again, self.unknown_jwks_kid(), self.setup.jwks().cloned())
        else {
            return first;
        };
        let Some(fetched) = jwks.fetch_early(&kid) else {
            return first;
        };
        fetched.await;
        let State::Exchange { raw_tokens, .. } = self.state else {
            return first;
        };
        let Ok(server) = SaslServer::new(SaslMechanism::OAuthBearer, &self.setup.stores()) else {
            return first;
        };
        self.state = State::Exchange { server, raw_tokens };
        self.on_frame(frame)
    }

    /// Takes one frame. Returns what to do, and the principal when this frame completed an
    /// authentication.
    pub fn on_frame(&mut self, frame: BytesMut) -> (Verdict, Option<KafkaPrincipal>) {
        let now = now_ms();
        if let State::Exchange {
            raw_tokens: true, ..
        } = self.state
        {
            return self.raw_step(&frame, now);
        }
        let prefix = match RequestPrefix::parse(&frame) {
            Ok(p) => p,
            Err(e) => return (Verdict::Close(e.to_string()), None),
        };
        match prefix.api {
            ApiKey::SaslHandshake => (self.on_handshake(&prefix, frame), None),
            ApiKey::SaslAuthenticate => self.on_authenticate(&prefix, frame, now),
            ApiKey::ApiVersions => (Verdict::Dispatch(frame), None),
            api if self.principal.is_some() => {
                if self.expired(now) {
                    (
                        Verdict::Close(format!(
                            "{api:?} after the SASL session expired (connections.max.reauth.ms) without re-authentication"
                        )),
                        None,
                    )
                } else {
                    (Verdict::Dispatch(frame), None)
                }
            }
            api => (
                Verdict::Close(format!("{api:?} before SASL authentication")),
                None,
            ),
        }
    }

    fn on_handshake(&mut self, prefix: &RequestPrefix, frame: BytesMut) -> Verdict {
        let mut body = frame.freeze();
        let req = match decode_header(prefix, &mut body).and_then(|_| {
            decode_body::<SaslHandshakeRequest>(prefix.api, prefix.version, &mut body)
        }) {
            Ok(r) => r,
            Err(e) => return Verdict::Close(e.to_string()),
        };
        let enabled = &self.setup.enabled;
        let names: Vec<StrBytes> = enabled
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let refuse = |code: i16, reason: String| {
            let body = SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(names.clone());
            Verdict::Fail {
                frame: respond(prefix, &body).ok(),
                delay: Duration::ZERO,
                reason,
            }
        };
        if !matches!(self.state, State::Handshake | State::Authenticated) {
            return refuse(
                ILLEGAL_SASL_STATE,
                "SaslHandshake in the middle of an exchange".into(),
            );
        }
        if self.principal.is_some() && prefix.version == 0 {
            // Re-authentication happens only through SaslAuthenticate (KIP-368).
            return refuse(
                ILLEGAL_SASL_STATE,
                "re-authentication with SaslHandshake v0".into(),
            );
        }
        let answer = handshake(enabled, req.mechanism.as_str());
        let Some(mechanism) = answer.mechanism else {
            return refuse(
                answer.error_code,
                format!("unsupported SASL mechanism {}", req.mechanism.as_str()),
            );
        };
        let server = match SaslServer::new(mechanism, &self.setup.stores()) {
            Ok(s) => s,
            Err(e) => return refuse(answer.error_code.max(33), e.to_string()),
        };
        self.state = State::Exchange {
            server,
            raw_tokens: prefix.version == 0,
        };
        let body = SaslHandshakeResponse::default()
            .with_error_code(0)
            .with_mechanisms(names);
        match respond(prefix, &body) {
            Ok(f) => Verdict::Answer(f),
            Err(e) => Verdict::Close(e),
        }
    }

    fn on_authenticate(
        &mut self,
        prefix: &RequestPrefix,
        frame: BytesMut,
        now: u64,
    ) -> (Verdict, Option<KafkaPrincipal>) {
        let mut body = frame.freeze();
        let req = match decode_header(prefix, &mut body).and_then(|_| {
            decode_body::<SaslAuthenticateRequest>(prefix.api, prefix.version, &mut body)
        }) {
            Ok(r) => r,
            Err(e) => return (Verdict::Close(e.to_string()), None),
        };
        let fail = |code: i16, message: String, delay_ms: u64| {
            let body = SaslAuthenticateResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message.clone())));
            Verdict::Fail {
                frame: respond(prefix, &body).ok(),
                delay: Duration::from_millis(delay_ms),
                reason: message,
            }
        };
        let State::Exchange { server, .. } = &mut self.state else {
            return (
                fail(
                    ILLEGAL_SASL_STATE,
                    "SaslAuthenticate without a SaslHandshake first".into(),
                    0,
                ),
                None,
            );
        };
        if let Admission::Blocked { retry_after_ms } = self.setup.failures.admit(self.peer_ip, now)
        {
            return (
                fail(
                    SASL_AUTHENTICATION_FAILED,
                    format!(
                        "Too many failed authentications from this address; retry in {retry_after_ms} ms"
                    ),
                    0,
                ),
                None,
            );
        }
        match server.evaluate(&req.auth_bytes, now) {
            Ok(SaslStep::Continue(out)) => {
                let body = SaslAuthenticateResponse::default().with_auth_bytes(out.into());
                match respond(prefix, &body) {
                    Ok(f) => (Verdict::Answer(f), None),
                    Err(e) => (Verdict::Close(e), None),
                }
            }
            Ok(SaslStep::Complete {
                response,
                principal,
                credential_expiry_ms,
            }) => match self.complete(principal, credential_expiry_ms, now) {
                Ok((principal, lifetime_ms)) => {
                    let mut body =
                        SaslAuthenticateResponse::default().with_auth_bytes(response.into());
                    if prefix.version >= 1 {
                        body = body.with_session_lifetime_ms(lifetime_ms as i64);
                    }
                    match respond(prefix, &body) {
                        Ok(f) => (Verdict::Answer(f), Some(principal)),
                        Err(e) => (Verdict::Close(e), None),
                    }
                }
                Err(e) => {
                    let delay = self.setup.failures.record_failure(self.peer_ip, now);
                    (fail(e.error_code(), e.to_string(), delay), None)
                }
            },
            Err(e) => {
                let delay = self.setup.failures.record_failure(self.peer_ip, now);
                (fail(e.error_code(), e.to_string(), delay), None)
            }
        }
    }

    /// A finished exchange: checks a re-authentication's principal, records the session's
    /// expiry. Returns the principal and the session lifetime to tell the client.
    fn complete(
        &mut self,
        principal: KafkaPrincipal,
        credential_expiry_ms: Option<u64>,
        now: u64,
    ) -> Result<(KafkaPrincipal, u64), SaslError> {
        if let Some(previous) = &self.principal {
            ensure_principal_unchanged(previous, &principal)?;
        }
        let max_reauth = (self.setup.max_reauth_ms > 0).then_some(self.setup.max_reauth_ms);
        let lifetime_ms = session_lifetime_ms(credential_expiry_ms, max_reauth, now);
        self.expires_at_ms = (lifetime_ms > 0).then(|| now.saturating_add(lifetime_ms));
        self.state = State::Authenticated;
        self.principal = Some(principal.clone());
        self.setup.failures.record_success(self.peer_ip);
        Ok((principal, lifetime_ms))
    }

    /// One raw token after a v0 handshake. A failure cannot be told to the client there:
    /// the connection closes after the delay, as Kafka's.
    fn raw_step(&mut self, token: &[u8], now: u64) -> (Verdict, Option<KafkaPrincipal>) {
        let State::Exchange { server, .. } = &mut self.state else {
            return (Verdict::Close("no SASL exchange".into()), None);
        };
        let failed = |this: &mut Self, reason: String| {
            let delay = this.setup.failures.record_failure(this.peer_ip, now);
            (
                Verdict::Fail {
                    frame: None,
                    delay: Duration::from_millis(delay),
                    reason,
                },
                None,
            )
        };
        if let Admission::Blocked { .. } = self.setup.failures.admit(self.peer_ip, now) {
            return (
                Verdict::Close("too many failed authentications from this address".into()),
                None,
            );
        }
        match server.evaluate(token, now) {
            Ok(SaslStep::Continue(out)) => match raw_token(&out) {
                Ok(f) => (Verdict::Answer(f), None),
                Err(e) => (Verdict::Close(e), None),
            },
            Ok(SaslStep::Complete {
                response,
                principal,
                credential_expiry_ms,
            }) => match self.complete(principal, credential_expiry_ms, now) {
                // PLAIN ends with no server token, and a v0 client then expects none.
                Ok((principal, _)) if response.is_empty() => (
                    Verdict::Answer(ResponseFrame::Flat(BytesMut::new())),
                    Some(principal),
                ),
                Ok((principal, _)) => match raw_token(&response) {
                    Ok(f) => (Verdict::Answer(f), Some(principal)),
                    Err(e) => (Verdict::Close(e), None),
                },
                Err(e) => failed(self, e.to_string()),
            },
            Err(e) => failed(self, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_kafka::messages::{MetadataRequest, RequestHeader};
    use proto_kafka::protocol::{Decodable, HeaderVersion};
    use std::collections::HashMap;
    use strom_security::auth_failures::FailedAuthConfig;
    use strom_security::sasl::{SaslMechanism, ScramCredentialStore};
    use strom_security::scram::{ScramClient, ScramCredential, ScramMechanism};

    struct Store(HashMap<(String, ScramMechanism), ScramCredential>);

    impl ScramCredentialStore for Store {
        fn credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            self.0.get(&(user.to_string(), m)).cloned()
        }
    }

    fn store() -> Arc<Store> {
        static STORE: std::sync::OnceLock<Arc<Store>> = std::sync::OnceLock::new();
        STORE
            .get_or_init(|| {
                let mut creds = HashMap::new();
                for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
                    creds.insert(
                        ("alice".to_string(), m),
                        ScramCredential::generate(m, "alice-secret", 4096).unwrap(),
                    );
                }
                Arc::new(Store(creds))
            })
            .clone()
    }

    fn session(max_failures: u32) -> SaslSession {
        let setup = SaslSetup::for_test(
            vec![
                SaslMechanism::Plain,
                SaslMechanism::ScramSha256,
                SaslMechanism::ScramSha512,
            ],
            vec![("bob".into(), "bob-secret".into())],
            Some(store()),
            0,
            FailedAuthConfig {
                failed_authentication_delay_ms: 7,
                max_failures,
                ..FailedAuthConfig::default()
            },
        );
        SaslSession::new(Arc::new(setup), [10, 0, 0, 1].into())
    }

    fn request<R: Encodable + HeaderVersion>(api: ApiKey, version: i16, body: &R) -> BytesMut {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, R::header_version(version)).unwrap();
        body.encode(&mut buf, version).unwrap();
        buf
    }

    /// The body of an answer (size prefix and v0/v1 response header skipped).
    fn answer<R: Decodable>(verdict: &Verdict, version: i16, header_bytes: usize) -> R {
        let frame = match verdict {
            Verdict::Answer(ResponseFrame::Flat(b)) => b.clone(),
            Verdict::Fail {
                frame: Some(ResponseFrame::Flat(b)),
                ..
            } => b.clone(),
            _ => panic!("no answer"),
        };
        let mut bytes = frame.freeze().split_off(4 + header_bytes);
        R::decode(&mut bytes, version).unwrap()
    }

    fn handshake_req(mechanism: &'static str) -> BytesMut {
        request(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
        )
    }

    fn authenticate_req(bytes: Vec<u8>) -> BytesMut {
        request(
            ApiKey::SaslAuthenticate,
            1,
            &SaslAuthenticateRequest::default().with_auth_bytes(bytes.into()),
        )
    }

    fn metadata_req() -> BytesMut {
        request(ApiKey::Metadata, 4, &MetadataRequest::default())
    }

    #[test]
    fn scram_exchanges_end_in_the_user_and_then_requests_pass() {
        for (name, m) in [
            ("SCRAM-SHA-256", ScramMechanism::Sha256),
            ("SCRAM-SHA-512", ScramMechanism::Sha512),
        ] {
            let mut s = session(20);
            let (v, _) = s.on_frame(handshake_req(name));
            let hs: SaslHandshakeResponse = answer(&v, 1, 4);
            assert_eq!(hs.error_code, 0);
            assert_eq!(hs.mechanisms.len(), 3);
            let mut client = ScramClient::new(m, "alice", "alice-secret");
            let (v, p) = s.on_frame(authenticate_req(client.first_message().unwrap()));
            assert!(p.is_none());
            let first: SaslAuthenticateResponse = answer(&v, 1, 4);
            assert_eq!(first.error_code, 0);
            let last = client.final_message(&first.auth_bytes).unwrap();
            assert!(!s.is_authenticated());
            let (v, p) = s.on_frame(authenticate_req(last));
            let done: SaslAuthenticateResponse = answer(&v, 1, 4);
            assert_eq!(done.error_code, 0, "{:?}", done.error_message);
            client.verify_server_final(&done.auth_bytes).unwrap();
            assert_eq!(p, Some(KafkaPrincipal::user("alice")));
            assert_eq!(done.session_lifetime_ms, 0);
            assert!(s.is_authenticated());
            assert!(matches!(s.on_frame(metadata_req()).0, Verdict::Dispatch(_)));
        }
    }

    #[test]
    fn metadata_before_authentication_closes_but_api_versions_passes() {
        let mut s = session(20);
        assert!(matches!(s.on_frame(metadata_req()).0, Verdict::Close(_)));
        let mut s = session(20);
        let api_versions = request(
            ApiKey::ApiVersions,
            0,
            &proto_kafka::messages::ApiVersionsRequest::default(),
        );
        assert!(matches!(s.on_frame(api_versions).0, Verdict::Dispatch(_)));
        assert_eq!(s.max_frame_bytes(100 << 20), 524288);
    }

    #[test]
    fn garbage_scram_and_wrong_passwords_fail_after_the_delay() {
        for garbage in [
            b"".to_vec(),
            vec![0xff; 10_000],
            b"n,,n=alice".to_vec(),
            b"n,,n=alice,r=".to_vec(),
            b"p=tls-unique,,n=alice,r=abc".to_vec(),
        ] {
            let mut s = session(20);
            let _ = s.on_frame(handshake_req("SCRAM-SHA-256"));
            let (v, p) = s.on_frame(authenticate_req(garbage.clone()));
            assert!(p.is_none());
            let Verdict::Fail { delay, .. } = &v else {
                panic!("{garbage:?} did not fail");
            };
            assert_eq!(*delay, Duration::from_millis(7));
            let r: SaslAuthenticateResponse = answer(&v, 1, 4);
            assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
        }
        let mut s = session(20);
        let _ = s.on_frame(handshake_req("PLAIN"));
        let (v, _) = s.on_frame(authenticate_req(b"\0bob\0wrong".to_vec()));
        let r: SaslAuthenticateResponse = answer(&v, 1, 4);
        assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    }

    #[test]
    fn an_address_with_too_many_failures_is_refused() {
        let setup_session = session(2);
        let setup = setup_session.setup.clone();
        for _ in 0..2 {
            let mut s = SaslSession::new(setup.clone(), [10, 0, 0, 1].into());
            let _ = s.on_frame(handshake_req("PLAIN"));
            let _ = s.on_frame(authenticate_req(b"\0bob\0wrong".to_vec()));
        }
        let mut s = SaslSession::new(setup.clone(), [10, 0, 0, 1].into());
        let _ = s.on_frame(handshake_req("PLAIN"));
        let (v, p) = s.on_frame(authenticate_req(b"\0bob\0bob-secret".to_vec()));
        assert!(p.is_none(), "blocked even with the right password");
        let r: SaslAuthenticateResponse = answer(&v, 1, 4);
        assert!(r.error_message.unwrap().contains("Too many failed"));
        // Another address is not affected.
        let mut s = SaslSession::new(setup, [10, 0, 0, 2].into());
        let _ = s.on_frame(handshake_req("PLAIN"));
        let (_, p) = s.on_frame(authenticate_req(b"\0bob\0bob-secret".to_vec()));
        assert_eq!(p, Some(KafkaPrincipal::user("bob")));
    }

    proptest::proptest! {
        /// Whatever bytes arrive before authentication, nothing but ApiVersions reaches the
        /// dispatcher, no principal is made up, and nothing panics.
        #[test]
        fn arbitrary_frames_never_authenticate(
            frames in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 1..6),
            handshake_first in proptest::bool::ANY,
        ) {
            let mut s = session(1000);
            if handshake_first {
                let _ = s.on_frame(handshake_req("SCRAM-SHA-256"));
            }
            for f in frames {
                let is_api_versions = f.len() >= 2 && f[0] == 0 && f[1] == ApiKey::ApiVersions as u8;
                let (v, p) = s.on_frame(BytesMut::from(&f[..]));
                proptest::prop_assert!(p.is_none());
                if let Verdict::Dispatch(_) = v {
                    proptest::prop_assert!(is_api_versions);
                }
            }
            proptest::prop_assert!(!s.is_authenticated());
        }
    }
}
