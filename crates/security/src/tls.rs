//! TLS for listeners with rustls, configured by Kafka's `ssl.*` names in their PEM form
//! (KIP-651, `ssl.keystore.type=PEM`), after Kafka's `SslFactory` / `DefaultSslEngineFactory`.
//!
//! - Key and certificate chain: `ssl.keystore.location` (one PEM file holding the private
//!   key and the chain), or `ssl.keystore.certificate.chain` + `ssl.keystore.key` (the PEM
//!   text itself). Encrypted keys (`ssl.key.password`) are not supported.
//! - Trust for client certificates: `ssl.truststore.location` (a PEM file of CA
//!   certificates) or `ssl.truststore.certificates` (the PEM text).
//! - `ssl.client.auth`: `none` (default), `requested`, `required`.
//! - `ssl.enabled.protocols`: `TLSv1.2`, `TLSv1.3` (both by default); rustls has no older
//!   versions, so naming one is a configuration error.
//!
//! [`TlsReloader`] rebuilds the configuration when the files' contents change (cert-manager
//! rotates them in place); the listener polls [`TlsReloader::maybe_reload`] and takes
//! [`TlsReloader::current`] for each new connection, so open connections keep theirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::principal::KafkaPrincipal;
use crate::principal_mapper::{PrincipalMappingError, SslPrincipalMapper};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("Invalid value for {name}: {reason}")]
    InvalidConfig { name: &'static str, reason: String },
    #[error("Missing required configuration {0}")]
    Missing(&'static str),
    #[error("Failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Invalid PEM in {what}: {reason}")]
    Pem { what: String, reason: String },
    #[error("TLS configuration refused by rustls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("Invalid truststore: {0}")]
    Verifier(String),
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

/// Where PEM text comes from: a file (`*.location`, reloadable) or the setting itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    /// The PEM text of a setting, with the setting's name (for errors, which never show the
    /// text: it is a secret).
    Inline(String, &'static str),
}

impl PemSource {
    fn read(&self) -> Result<Vec<u8>, TlsError> {
        match self {
            PemSource::File(path) => std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.clone(),
                source,
            }),
            PemSource::Inline(text, _) => Ok(text.clone().into_bytes()),
        }
    }

    fn describe(&self) -> String {
        match self {
            PemSource::File(path) => path.display().to_string(),
            PemSource::Inline(_, setting) => format!("the PEM text of {setting}"),
        }
    }
}

/// The keystore: one PEM with key and chain, or the two separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keystore {
    Combined(PemSource),
    Separate { chain: PemSource, key: PemSource },
}

/// A listener's `ssl.*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub keystore: Keystore,
    pub truststore: Option<PemSource>,
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`, as rustls versions.
    pub tls12: bool,
    pub tls13: bool,
    /// `ssl.principal.mapping.rules`.
    pub principal_mapping_rules: String,
}

fn prop<'a>(props: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    props.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// `ssl.enabled.protocols` (default both): (TLSv1.2, TLSv1.3).
fn parse_protocols(props: &HashMap<String, String>) -> Result<(bool, bool), TlsError> {
    let (mut tls12, mut tls13) = (false, false);
    for p in prop(props, "ssl.enabled.protocols")
        .unwrap_or("TLSv1.2,TLSv1.3")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match p {
            "TLSv1.2" => tls12 = true,
            "TLSv1.3" => tls13 = true,
            other => {
                return Err(TlsError::InvalidConfig {
                    name: "ssl.enabled.protocols",
                    reason: format!("`{other}` is not supported (only TLSv1.2 and TLSv1.3)"),
                })
            }
        }
    }
    if !tls12 && !tls13 {
        return Err(TlsError::InvalidConfig {
            name: "ssl.enabled.protocols",
            reason: "no protocol enabled".into(),
        });
    }
    Ok((tls12, tls13))
}

impl TlsSettings {
    /// Reads a listener's settings from Kafka properties (already stripped of any
    /// `listener.name.<name>.` prefix by the caller).
    pub fn from_properties(props: &HashMap<String, String>) -> Result<Self, TlsError> {
        for (name, wanted) in [("ssl.keystore.type", "PEM"), ("ssl.truststore.type", "PEM")] {
            if let Some(v) = prop(props, name) {
                if !v.eq_ignore_ascii_case(wanted) {
                    return Err(TlsError::InvalidConfig {
                        name: if name == "ssl.keystore.type" {
                            "ssl.keystore.type"
                        } else {
                            "ssl.truststore.type"
                        },
                        reason: format!("`{v}`: only PEM is supported"),
                    });
                }
            }
        }
        if prop(props, "ssl.key.password").is_some() {
            return Err(TlsError::InvalidConfig {
                name: "ssl.key.password",
                reason: "encrypted private keys are not supported; give an unencrypted PKCS#8 key"
                    .into(),
            });
        }
        let location = prop(props, "ssl.keystore.location");
        let chain = prop(props, "ssl.keystore.certificate.chain");
        let key = prop(props, "ssl.keystore.key");
        let keystore = match (location, chain, key) {
            (Some(path), None, None) => Keystore::Combined(PemSource::File(path.into())),
            (None, Some(chain), Some(key)) => Keystore::Separate {
                chain: PemSource::Inline(chain.into(), "ssl.keystore.certificate.chain"),
                key: PemSource::Inline(key.into(), "ssl.keystore.key"),
            },
            (None, None, None) => return Err(TlsError::Missing("ssl.keystore.location")),
            (None, Some(_), None) => return Err(TlsError::Missing("ssl.keystore.key")),
            (None, None, Some(_)) => {
                return Err(TlsError::Missing("ssl.keystore.certificate.chain"))
            }
            _ => {
                return Err(TlsError::InvalidConfig {
                    name: "ssl.keystore.location",
                    reason: "give either the location or the certificate chain and key, not both"
                        .into(),
                })
            }
        };
        let truststore = match (
            prop(props, "ssl.truststore.location"),
            prop(props, "ssl.truststore.certificates"),
        ) {
            (Some(_), Some(_)) => {
                return Err(TlsError::InvalidConfig {
                    name: "ssl.truststore.location",
                    reason: "give either the location or the certificates, not both".into(),
                })
            }
            (Some(path), None) => Some(PemSource::File(path.into())),
            (None, Some(pem)) => Some(PemSource::Inline(pem.into(), "ssl.truststore.certificates")),
            (None, None) => None,
        };
        let client_auth = match prop(props, "ssl.client.auth")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("none") => ClientAuth::None,
            Some("requested") => ClientAuth::Requested,
            Some("required") => ClientAuth::Required,
            Some(other) => {
                return Err(TlsError::InvalidConfig {
                    name: "ssl.client.auth",
                    reason: format!("`{other}` is not one of none, requested, required"),
                })
            }
        };
        let (tls12, tls13) = parse_protocols(props)?;
        let principal_mapping_rules = prop(props, "ssl.principal.mapping.rules")
            .unwrap_or("DEFAULT")
            .to_string();
        SslPrincipalMapper::from_rules(&principal_mapping_rules).map_err(|e| {
            TlsError::InvalidConfig {
                name: "ssl.principal.mapping.rules",
                reason: e.to_string(),
            }
        })?;
        Ok(TlsSettings {
            keystore,
            truststore,
            client_auth,
            tls12,
            tls13,
            principal_mapping_rules,
        })
    }

    /// The principal mapper of these settings.
    pub fn principal_mapper(&self) -> Result<SslPrincipalMapper, PrincipalMappingError> {
        SslPrincipalMapper::from_rules(&self.principal_mapping_rules)
    }

    /// The files this configuration reads, for change detection.
    fn files(&self) -> Vec<&Path> {
        let sources: Vec<&PemSource> = match &self.keystore {
            Keystore::Combined(s) => vec![s],
            Keystore::Separate { chain, key } => vec![chain, key],
        };
        sources
            .into_iter()
            .chain(self.truststore.as_ref())
            .filter_map(|s| match s {
                PemSource::File(p) => Some(p.as_path()),
                PemSource::Inline(..) => None,
            })
            .collect()
    }
}

/// The PEM inputs of one build, kept to tell whether the files changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    keystore: KeystoreBytes,
    truststore: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeystoreBytes {
    Combined(Vec<u8>),
    Separate { chain: Vec<u8>, key: Vec<u8> },
}

fn read_inputs(settings: &TlsSettings) -> Result<Inputs, TlsError> {
    let keystore = match &settings.keystore {
        Keystore::Combined(s) => KeystoreBytes::Combined(s.read()?),
        Keystore::Separate { chain, key } => KeystoreBytes::Separate {
            chain: chain.read()?,
            key: key.read()?,
        },
    };
    let truststore = settings
        .truststore
        .as_ref()
        .map(PemSource::read)
        .transpose()?;
    Ok(Inputs {
        keystore,
        truststore,
    })
}

fn pem_error(what: &PemSource, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        what: what.describe(),
        reason: e.to_string(),
    }
}

fn parse_certs(source: &PemSource, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(source, e))?;
    if certs.is_empty() {
        return Err(pem_error(source, "no CERTIFICATE block"));
    }
    Ok(certs)
}

type KeyAndChain = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn key_and_chain(keystore: &Keystore, bytes: &KeystoreBytes) -> Result<KeyAndChain, TlsError> {
    Ok(match (keystore, bytes) {
        (Keystore::Combined(source), KeystoreBytes::Combined(pem)) => {
            let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| pem_error(source, e))?;
            (parse_certs(source, pem)?, key)
        }
        (
            Keystore::Separate { chain, key },
            KeystoreBytes::Separate {
                chain: chain_pem,
                key: key_pem,
            },
        ) => {
            let certs = parse_certs(chain, chain_pem)?;
            let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem_error(key, e))?;
            (certs, key)
        }
        _ => {
            return Err(TlsError::InvalidConfig {
                name: "ssl.keystore.location",
                reason: "keystore changed shape between reads".into(),
            })
        }
    })
}

fn build(settings: &TlsSettings, inputs: &Inputs) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = key_and_chain(&settings.keystore, &inputs.keystore)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if settings.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if settings.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions)?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let (Some(source), Some(pem)) = (&settings.truststore, &inputs.truststore) else {
                return Err(TlsError::Missing("ssl.truststore.location"));
            };
            let mut roots = RootCertStore::empty();
            for cert in parse_certs(source, pem)? {
                roots.add(cert).map_err(|e| pem_error(source, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(Arc::new(builder.with_single_cert(chain, key)?))
}

/// Builds a listener's rustls configuration once.
pub fn build_server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    build(settings, &read_inputs(settings)?)
}

/// A listener's TLS configuration that follows its files.
pub struct TlsReloader {
    settings: TlsSettings,
    state: RwLock<(Inputs, Arc<ServerConfig>)>,
}

impl TlsReloader {
    /// Builds the first configuration; an error here is a start-up error.
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let inputs = read_inputs(&settings)?;
        let config = build(&settings, &inputs)?;
        Ok(TlsReloader {
            settings,
            state: RwLock::new((inputs, config)),
        })
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.state.read() {
            Ok(guard) => guard.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    /// Re-reads the files; when their contents changed and still make a valid
    /// configuration, swaps it in and returns true. A change that does not build (a
    /// half-written file, a key that does not match its certificate) keeps the old
    /// configuration and returns the error; the next poll tries again.
    pub fn maybe_reload(&self) -> Result<bool, TlsError> {
        if self.settings.files().is_empty() {
            return Ok(false);
        }
        let inputs = read_inputs(&self.settings)?;
        {
            let guard = match self.state.read() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if guard.0 == inputs {
                return Ok(false);
            }
        }
        let config = build(&self.settings, &inputs)?;
        let mut guard = match self.state.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *guard = (inputs, config);
        tracing::info!(files = ?self.settings.files(), "TLS configuration reloaded");
        Ok(true)
    }
}

/// A Kafka client's `ssl.*` properties (the CLI's `--command-config`, the gateway's
/// connection to a secured cluster): a truststore is required (there is no JVM default
/// truststore to fall back on), a keystore is optional (mTLS), and
/// `ssl.endpoint.identification.algorithm` is `https` (check the broker's host name, the
/// default) or empty (check the chain only, as Kafka does when it is set to "").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsSettings {
    pub truststore: PemSource,
    pub keystore: Option<Keystore>,
    pub tls12: bool,
    pub tls13: bool,
    pub verify_hostname: bool,
}

impl ClientTlsSettings {
    pub fn from_properties(props: &HashMap<String, String>) -> Result<Self, TlsError> {
        let truststore = match (
            prop(props, "ssl.truststore.location"),
            prop(props, "ssl.truststore.certificates"),
        ) {
            (Some(path), None) => PemSource::File(path.into()),
            (None, Some(pem)) => PemSource::Inline(pem.into(), "ssl.truststore.certificates"),
            (None, None) => return Err(TlsError::Missing("ssl.truststore.location")),
            (Some(_), Some(_)) => {
                return Err(TlsError::InvalidConfig {
                    name: "ssl.truststore.location",
                    reason: "give either the location or the certificates, not both".into(),
                })
            }
        };
        let has_keystore = [
            "ssl.keystore.location",
            "ssl.keystore.certificate.chain",
            "ssl.keystore.key",
        ]
        .iter()
        .any(|n| prop(props, n).is_some());
        let keystore = if has_keystore {
            Some(TlsSettings::from_properties(props)?.keystore)
        } else {
            None
        };
        let (tls12, tls13) = parse_protocols(props)?;
        let verify_hostname = match props
            .get("ssl.endpoint.identification.algorithm")
            .map(|v| v.trim())
        {
            None => true,
            Some(v) if v.eq_ignore_ascii_case("https") => true,
            Some("") => false,
            Some(other) => {
                return Err(TlsError::InvalidConfig {
                    name: "ssl.endpoint.identification.algorithm",
                    reason: format!("`{other}` is not https or empty"),
                })
            }
        };
        Ok(ClientTlsSettings {
            truststore,
            keystore,
            tls12,
            tls13,
            verify_hostname,
        })
    }
}

/// Checks the chain and signatures as usual but takes a certificate issued for another
/// name (`ssl.endpoint.identification.algorithm=`).
#[derive(Debug)]
struct ChainOnlyVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Builds a client's rustls configuration from [`ClientTlsSettings`].
pub fn build_client_config(
    settings: &ClientTlsSettings,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let trust_pem = settings.truststore.read()?;
    for cert in parse_certs(&settings.truststore, &trust_pem)? {
        roots
            .add(cert)
            .map_err(|e| pem_error(&settings.truststore, e))?;
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if settings.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if settings.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)?;
    let roots = Arc::new(roots);
    let builder = if settings.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnlyVerifier(webpki)))
    };
    let config = match &settings.keystore {
        None => builder.with_no_client_auth(),
        Some(keystore) => {
            let settings_like = TlsSettings {
                keystore: keystore.clone(),
                truststore: None,
                client_auth: ClientAuth::None,
                tls12: settings.tls12,
                tls13: settings.tls13,
                principal_mapping_rules: "DEFAULT".into(),
            };
            let inputs = read_inputs(&settings_like)?;
            let (chain, key) = key_and_chain(keystore, &inputs.keystore)?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

/// The principal of a TLS connection (Kafka's `DefaultKafkaPrincipalBuilder` for SSL): the
/// mapped subject of the client's certificate, or ANONYMOUS when it sent none.
pub fn principal_of_peer(
    peer_certificates: Option<&[CertificateDer<'_>]>,
    mapper: &SslPrincipalMapper,
) -> Result<KafkaPrincipal, PrincipalMappingError> {
    match peer_certificates.and_then(|c| c.first()) {
        Some(leaf) => Ok(KafkaPrincipal::user(
            mapper.principal_name_of_certificate(leaf.as_ref())?,
        )),
        None => Ok(KafkaPrincipal::anonymous()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use rustls::pki_types::ServerName;
    use rustls::ClientConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf certificate signed by `ca`: (certificate PEM, key PEM).
    fn leaf(ca: &Ca, sans: &[&str], cn: &str, org: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        // rcgen starts with a default CN; DER order here is O then CN, so the RFC 2253
        // string (most specific first) reads CN=...,O=...
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn expired_leaf(ca: &Ca, cn: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client_config(trust: &Ca, client_cert: Option<(String, String)>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(trust.cert.der().clone()).unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let config = match client_cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }

    struct Outcome {
        client: Result<Vec<u8>, String>,
        server: Result<(KafkaPrincipal, Vec<u8>), String>,
    }

    /// One loopback connection: the client says "ping", the server answers with its
    /// principal's name. Returns the client's view (the server's leaf certificate) and
    /// the server's (the principal).
    async fn handshake(
        server_config: Arc<ServerConfig>,
        mapper: SslPrincipalMapper,
        client: Arc<ClientConfig>,
        server_name: &str,
    ) -> Outcome {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let principal = principal_of_peer(tls.get_ref().1.peer_certificates(), &mapper)
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            tls.write_all(principal.name.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            tls.shutdown().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((principal, buf.to_vec()))
        });
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let connector = tokio_rustls::TlsConnector::from(client);
        let client = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let mut tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec())
                .unwrap_or_default();
            tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut reply = Vec::new();
            tls.read_to_end(&mut reply)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(leaf)
        }
        .await;
        let server = tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("server side hung")
            .unwrap();
        Outcome { client, server }
    }

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn mtls_with_principal_mapping() {
        let ca_good = ca("Strom Test CA");
        let ca_other = ca("Someone Else");
        let (server_cert, server_key) = leaf(&ca_good, &["localhost"], "broker", "Strom");
        let settings = TlsSettings::from_properties(&props(&[
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.certificate.chain", &server_cert),
            ("ssl.keystore.key", &server_key),
            ("ssl.truststore.certificates", &ca_good.cert.pem()),
            ("ssl.client.auth", "required"),
            (
                "ssl.principal.mapping.rules",
                "RULE:^CN=([^,]*),O=Strom$/$1/L,DEFAULT",
            ),
        ]))
        .unwrap();
        let config = build_server_config(&settings).unwrap();
        let mapper = settings.principal_mapper().unwrap();
        let rt = runtime();

        let trusted = leaf(&ca_good, &[], "Alice", "Strom");
        let out = rt.block_on(handshake(
            config.clone(),
            mapper.clone(),
            client_config(&ca_good, Some(trusted)),
            "localhost",
        ));
        assert!(out.client.is_ok(), "{:?}", out.client);
        let (principal, ping) = out.server.unwrap();
        assert_eq!(principal, KafkaPrincipal::user("alice"));
        assert_eq!(ping, b"ping");

        // Not matched by the rule: DEFAULT gives the RFC 2253 subject, most specific first.
        let other_org = leaf(&ca_good, &[], "bob", "Elsewhere, Inc");
        let out = rt.block_on(handshake(
            config.clone(),
            mapper.clone(),
            client_config(&ca_good, Some(other_org)),
            "localhost",
        ));
        assert_eq!(out.server.unwrap().0.name, "CN=bob,O=Elsewhere\\, Inc");

        let untrusted = leaf(&ca_other, &[], "mallory", "Strom");
        let out = rt.block_on(handshake(
            config.clone(),
            mapper.clone(),
            client_config(&ca_good, Some(untrusted)),
            "localhost",
        ));
        assert!(out.server.is_err(), "untrusted client certificate accepted");

        let out = rt.block_on(handshake(
            config.clone(),
            mapper.clone(),
            client_config(&ca_good, None),
            "localhost",
        ));
        assert!(
            out.server.is_err(),
            "required client auth without a certificate"
        );

        let expired = expired_leaf(&ca_good, "old");
        let out = rt.block_on(handshake(
            config.clone(),
            mapper.clone(),
            client_config(&ca_good, Some(expired)),
            "localhost",
        ));
        let err = out.server.expect_err("expired client certificate accepted");
        assert!(err.contains("xpired"), "{err}");

        let out = rt.block_on(handshake(
            config,
            mapper,
            client_config(&ca_good, None),
            "wrong.example",
        ));
        assert!(out.client.is_err(), "wrong hostname accepted");
    }

    #[test]
    fn requested_client_auth_allows_anonymous_and_server_only_tls() {
        let ca_good = ca("Strom Test CA");
        let (server_cert, server_key) = leaf(&ca_good, &["localhost"], "broker", "Strom");
        let rt = runtime();
        let settings = TlsSettings::from_properties(&props(&[
            ("ssl.keystore.certificate.chain", &server_cert),
            ("ssl.keystore.key", &server_key),
            ("ssl.truststore.certificates", &ca_good.cert.pem()),
            ("ssl.client.auth", "requested"),
        ]))
        .unwrap();
        let out = rt.block_on(handshake(
            build_server_config(&settings).unwrap(),
            settings.principal_mapper().unwrap(),
            client_config(&ca_good, None),
            "localhost",
        ));
        assert_eq!(out.server.unwrap().0, KafkaPrincipal::anonymous());

        let settings = TlsSettings::from_properties(&props(&[
            ("ssl.keystore.certificate.chain", &server_cert),
            ("ssl.keystore.key", &server_key),
            ("ssl.enabled.protocols", "TLSv1.2"),
        ]))
        .unwrap();
        let out = rt.block_on(handshake(
            build_server_config(&settings).unwrap(),
            SslPrincipalMapper::default(),
            client_config(&ca_good, None),
            "localhost",
        ));
        assert!(out.client.is_ok());
        assert_eq!(out.server.unwrap().0, KafkaPrincipal::anonymous());

        // A client that does not trust the broker's CA refuses it.
        let out = rt.block_on(handshake(
            build_server_config(&settings).unwrap(),
            SslPrincipalMapper::default(),
            client_config(&ca("Unknown CA"), None),
            "localhost",
        ));
        let err = out.client.expect_err("server from an unknown CA accepted");
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn reload_picks_up_a_new_certificate() {
        let ca_good = ca("Strom Test CA");
        let dir = tempfile::tempdir().unwrap();
        let keystore = dir.path().join("keystore.pem");
        let truststore = dir.path().join("truststore.pem");
        let (cert1, key1) = leaf(&ca_good, &["localhost"], "broker-1", "Strom");
        std::fs::write(&keystore, format!("{key1}{cert1}")).unwrap();
        std::fs::write(&truststore, ca_good.cert.pem()).unwrap();
        let settings = TlsSettings::from_properties(&props(&[
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.location", keystore.to_str().unwrap()),
            ("ssl.truststore.location", truststore.to_str().unwrap()),
        ]))
        .unwrap();
        let reloader = TlsReloader::new(settings).unwrap();
        assert!(!reloader.maybe_reload().unwrap(), "nothing changed");
        let rt = runtime();
        let first = rt
            .block_on(handshake(
                reloader.current(),
                SslPrincipalMapper::default(),
                client_config(&ca_good, None),
                "localhost",
            ))
            .client
            .unwrap();
        assert_eq!(subject(&first), "CN=broker-1,O=Strom");

        // A half-written file keeps the old configuration.
        std::fs::write(&keystore, &key1).unwrap();
        assert!(reloader.maybe_reload().is_err());
        let (cert2, key2) = leaf(&ca_good, &["localhost"], "broker-2", "Strom");
        std::fs::write(&keystore, format!("{cert2}{key2}")).unwrap();
        assert!(reloader.maybe_reload().unwrap());
        assert!(!reloader.maybe_reload().unwrap());
        let second = rt
            .block_on(handshake(
                reloader.current(),
                SslPrincipalMapper::default(),
                client_config(&ca_good, None),
                "localhost",
            ))
            .client
            .unwrap();
        assert_eq!(subject(&second), "CN=broker-2,O=Strom");
    }

    fn subject(der: &[u8]) -> String {
        crate::principal_mapper::subject_rfc2253(der).unwrap()
    }

    #[test]
    fn client_settings_from_kafka_properties() {
        let ca_good = ca("Strom Test CA");
        let (server_cert, server_key) = leaf(&ca_good, &["broker.test"], "broker", "Strom");
        let server = TlsSettings::from_properties(&props(&[
            ("ssl.keystore.certificate.chain", &server_cert),
            ("ssl.keystore.key", &server_key),
            ("ssl.truststore.certificates", &ca_good.cert.pem()),
            ("ssl.client.auth", "requested"),
        ]))
        .unwrap();
        let server_config = build_server_config(&server).unwrap();
        let mapper = server.principal_mapper().unwrap();
        let rt = runtime();
        let ca_pem = ca_good.cert.pem();
        let client = |extra: &[(&str, &str)]| {
            let mut p = props(&[("ssl.truststore.certificates", &ca_pem)]);
            p.extend(props(extra));
            build_client_config(&ClientTlsSettings::from_properties(&p).unwrap()).unwrap()
        };
        let run =
            |c, name: &str| rt.block_on(handshake(server_config.clone(), mapper.clone(), c, name));
        assert!(run(client(&[]), "broker.test").client.is_ok());
        assert!(
            run(client(&[]), "localhost").client.is_err(),
            "host name not checked"
        );
        let chain_only = client(&[("ssl.endpoint.identification.algorithm", "")]);
        assert!(run(chain_only, "localhost").client.is_ok());
        // Chain-only still refuses a broker from an unknown CA.
        let other = ca("Other CA").cert.pem();
        let stranger = build_client_config(
            &ClientTlsSettings::from_properties(&props(&[
                ("ssl.truststore.certificates", &other),
                ("ssl.endpoint.identification.algorithm", ""),
            ]))
            .unwrap(),
        )
        .unwrap();
        assert!(run(stranger, "broker.test").client.is_err());
        // mTLS from the client's keystore properties.
        let (cert, key) = leaf(&ca_good, &[], "cli", "Strom");
        let out = run(
            client(&[
                ("ssl.keystore.certificate.chain", &cert),
                ("ssl.keystore.key", &key),
            ]),
            "broker.test",
        );
        assert_eq!(out.server.unwrap().0.name, "CN=cli,O=Strom");
        assert!(ClientTlsSettings::from_properties(&props(&[])).is_err());
        assert!(ClientTlsSettings::from_properties(&props(&[
            ("ssl.truststore.certificates", &ca_pem),
            ("ssl.endpoint.identification.algorithm", "ldap"),
        ]))
        .is_err());
    }

    #[test]
    fn settings_validation() {
        let ok = [("ssl.keystore.location", "/k.pem")];
        assert!(TlsSettings::from_properties(&props(&ok)).is_ok());
        for bad in [
            vec![],
            vec![
                ("ssl.keystore.location", "/k.pem"),
                ("ssl.keystore.type", "JKS"),
            ],
            vec![
                ("ssl.keystore.location", "/k.pem"),
                ("ssl.key.password", "x"),
            ],
            vec![
                ("ssl.keystore.location", "/k.pem"),
                ("ssl.keystore.key", "x"),
            ],
            vec![("ssl.keystore.certificate.chain", "x")],
            vec![
                ("ssl.keystore.location", "/k.pem"),
                ("ssl.client.auth", "sometimes"),
            ],
            vec![
                ("ssl.keystore.location", "/k.pem"),
                ("ssl.enabled.protocols", "TLSv1.1"),
            ],
            vec![
                ("ssl.keystore.location", "/k.pem"),
                ("ssl.enabled.protocols", ","),
            ],
            vec![
                ("ssl.keystore.location", "/k.pem"),
                ("ssl.principal.mapping.rules", "RULE:x"),
            ],
            vec![
                ("ssl.keystore.location", "/k.pem"),
                ("ssl.truststore.location", "/t.pem"),
                ("ssl.truststore.certificates", "x"),
            ],
        ] {
            assert!(
                TlsSettings::from_properties(&props(&bad)).is_err(),
                "{bad:?}"
            );
        }
        // Required client auth needs a truststore; a missing file is a read error.
        let s = TlsSettings::from_properties(&props(&[
            ("ssl.keystore.location", "/nonexistent/k.pem"),
            ("ssl.client.auth", "required"),
        ]))
        .unwrap();
        assert!(matches!(
            build_server_config(&s),
            Err(TlsError::Read { .. })
        ));
        let ca_good = ca("x");
        let (cert, key) = leaf(&ca_good, &["localhost"], "b", "S");
        let s = TlsSettings::from_properties(&props(&[
            ("ssl.keystore.certificate.chain", &cert),
            ("ssl.keystore.key", &key),
            ("ssl.client.auth", "required"),
        ]))
        .unwrap();
        assert!(matches!(build_server_config(&s), Err(TlsError::Missing(_))));
        let s = TlsSettings::from_properties(&props(&[
            ("ssl.keystore.certificate.chain", "not pem"),
            ("ssl.keystore.key", &key),
        ]))
        .unwrap();
        assert!(matches!(build_server_config(&s), Err(TlsError::Pem { .. })));
        // A bad key given as text: the error names the setting, never the text.
        let s = TlsSettings::from_properties(&props(&[
            ("ssl.keystore.certificate.chain", &cert),
            (
                "ssl.keystore.key",
                "-----BEGIN PRIVATE KEY-----\nsecret-ish!\n-----END PRIVATE KEY-----\n",
            ),
        ]))
        .unwrap();
        let err = build_server_config(&s).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("ssl.keystore.key") && !e.contains("secret-ish")),
            "{err:?}"
        );
    }
}
