//! A Kafka client's security settings from its properties file (the CLI's
//! `--command-config FILE`, as kafka-topics.sh takes one): `security.protocol`,
//! `sasl.mechanism`, `sasl.jaas.config` (the login module's options: `username`,
//! `password`, ...) and the `ssl.*` client settings of [`crate::tls::ClientTlsSettings`].
//! OAUTHBEARER's token comes from Strom's own `sasl.oauthbearer.token` or
//! `sasl.oauthbearer.token.file`: Kafka's Java client asks a login callback handler (a
//! class) for it, which a properties file cannot carry for a Rust client.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;

use crate::principal::SecurityProtocol;
use crate::sasl::SaslMechanism;
use crate::tls::{ClientTlsSettings, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("Invalid value for {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("cannot read sasl.oauthbearer.token.file {path}: {reason}")]
    TokenFile { path: String, reason: String },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ClientConfigError {
    ClientConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// Parses Java's `.properties` format: `key=value`, `key: value` or `key value`; `#` and
/// `!` comments; a trailing backslash continues the line; `\t \n \r \f \uXXXX` and `\x`
/// escapes.
pub fn parse_properties(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut logical = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if logical.is_empty()
            && (trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!'))
        {
            continue;
        }
        logical.push_str(trimmed);
        // An odd number of trailing backslashes continues the line.
        let trailing = logical.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            logical.pop();
            if lines.clone().next().is_some() {
                continue;
            }
        }
        let (key, value) = split_key_value(&logical);
        out.insert(unescape(key), unescape(value));
        logical.clear();
    }
    out
}

fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' => {
                let key = &line[..i];
                let mut rest = line[i..].trim_start_matches([' ', '\t']);
                if (c == ' ' || c == '\t') && (rest.starts_with('=') || rest.starts_with(':')) {
                    rest = &rest[1..];
                } else if c == '=' || c == ':' {
                    rest = &line[i + 1..];
                }
                return (key, rest.trim_start_matches([' ', '\t']));
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A parsed `sasl.jaas.config`: `<LoginModule> <flag> key="value" ...;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JaasConfig {
    pub login_module: String,
    pub options: BTreeMap<String, String>,
}

/// Parses one JAAS login-module entry as Kafka's `JaasConfig` does (quoted values may hold
/// spaces and `\"`; the entry ends with `;`).
pub fn parse_jaas_config(text: &str) -> Result<JaasConfig, ClientConfigError> {
    const NAME: &str = "sasl.jaas.config";
    let text = text.trim();
    let body = text
        .strip_suffix(';')
        .ok_or_else(|| invalid(NAME, "the entry must end with ;"))?
        .trim();
    let mut rest = body;
    let mut word = || -> Option<String> {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        let w = rest[..end].to_string();
        rest = &rest[end..];
        Some(w)
    };
    let login_module = word().ok_or_else(|| invalid(NAME, "no login module"))?;
    let flag = word().ok_or_else(|| invalid(NAME, "no control flag"))?;
    if !["required", "requisite", "sufficient", "optional"]
        .contains(&flag.to_ascii_lowercase().as_str())
    {
        return Err(invalid(NAME, format!("`{flag}` is not a control flag")));
    }
    let mut options = BTreeMap::new();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let eq = s
            .find('=')
            .ok_or_else(|| invalid(NAME, "option without ="))?;
        let key = s[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(invalid(NAME, "bad option name"));
        }
        let after = s[eq + 1..].trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                if escaped {
                    value.push(c);
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = Some(i);
                    break;
                } else {
                    value.push(c);
                }
            }
            let end = end.ok_or_else(|| invalid(NAME, "unterminated quoted value"))?;
            (value, &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        options.insert(key.to_string(), value);
        s = tail.trim_start();
    }
    Ok(JaasConfig {
        login_module,
        options,
    })
}

/// The largest token file read: real access tokens are a few KiB, and a wrong path (a log,
/// a disk image) must not be read whole into memory.
pub const MAX_TOKEN_FILE_BYTES: u64 = 1024 * 1024;

/// Where an OAUTHBEARER client takes its token from.
#[derive(Clone, PartialEq, Eq)]
pub enum OAuthBearerTokenSource {
    /// `sasl.oauthbearer.token`: the compact JWT itself.
    Token(String),
    /// `sasl.oauthbearer.token.file`: read again for each connection, so that whatever
    /// refreshes the token (a sidecar, a cron job) only has to rewrite the file.
    File(PathBuf),
}

impl std::fmt::Debug for OAuthBearerTokenSource {
    // A token is a credential: keep it out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OAuthBearerTokenSource::Token(_) => f.write_str("Token(<hidden>)"),
            OAuthBearerTokenSource::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl OAuthBearerTokenSource {
    /// The token to send now (the file's current content, trimmed).
    pub fn load(&self) -> Result<String, ClientConfigError> {
        match self {
            OAuthBearerTokenSource::Token(token) => Ok(token.clone()),
            OAuthBearerTokenSource::File(path) => {
                let err = |reason: String| ClientConfigError::TokenFile {
                    path: path.display().to_string(),
                    reason,
                };
                let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
                let mut text = String::new();
                file.take(MAX_TOKEN_FILE_BYTES + 1)
                    .read_to_string(&mut text)
                    .map_err(|e| err(e.to_string()))?;
                if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
                    return Err(err(format!(
                        "larger than {MAX_TOKEN_FILE_BYTES} bytes: not a token"
                    )));
                }
                let token = text.trim();
                check_bearer_token(token).map_err(err)?;
                Ok(token.to_string())
            }
        }
    }
}

/// RFC 6750's `b64token` (what Kafka's `OAuthBearerClientInitialResponse` accepts): a token
/// with a space or a `^A` in it would break the initial response's framing.
fn check_bearer_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".to_string());
    }
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
    {
        return Err(
            "the token is not a compact JWT (letters, digits and -._~+/ only, = at the end)"
                .to_string(),
        );
    }
    Ok(())
}

/// A client's SASL settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSasl {
    pub mechanism: SaslMechanism,
    pub jaas: Option<JaasConfig>,
    /// OAUTHBEARER's token; `None` for the other mechanisms.
    pub oauthbearer_token: Option<OAuthBearerTokenSource>,
}

impl ClientSasl {
    /// The `username` and `password` options PLAIN and SCRAM log in with.
    pub fn username_password(&self) -> Option<(&str, &str)> {
        let jaas = self.jaas.as_ref()?;
        Some((
            jaas.options.get("username")?.as_str(),
            jaas.options.get("password")?.as_str(),
        ))
    }
}

/// What `--command-config` says about security.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSecurityConfig {
    pub protocol: SecurityProtocol,
    pub sasl: Option<ClientSasl>,
    pub tls: Option<ClientTlsSettings>,
}

impl ClientSecurityConfig {
    pub fn from_properties(props: &HashMap<String, String>) -> Result<Self, ClientConfigError> {
        let protocol = match props.get("security.protocol").map(|v| v.trim()) {
            None | Some("") => SecurityProtocol::Plaintext,
            Some(v) => SecurityProtocol::from_name(v)
                .ok_or_else(|| invalid("security.protocol", format!("`{v}` is unknown")))?,
        };
        let sasl = if protocol.uses_sasl() {
            // Kafka's client default is GSSAPI, which Strom does not speak.
            let name = props
                .get("sasl.mechanism")
                .map(|v| v.trim())
                .unwrap_or("GSSAPI");
            let mechanism = SaslMechanism::from_name(name)
                .ok_or_else(|| invalid("sasl.mechanism", format!("`{name}` is not supported")))?;
            let jaas = props
                .get("sasl.jaas.config")
                .filter(|v| !v.trim().is_empty())
                .map(|v| parse_jaas_config(v))
                .transpose()?;
            let oauthbearer_token = if mechanism == SaslMechanism::OAuthBearer {
                Some(oauthbearer_token_source(props)?)
            } else {
                None
            };
            let sasl = ClientSasl {
                mechanism,
                jaas,
                oauthbearer_token,
            };
            if matches!(
                mechanism,
                SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512
            ) && sasl.username_password().is_none()
            {
                return Err(invalid(
                    "sasl.jaas.config",
                    format!("{} needs username and password options", mechanism.name()),
                ));
            }
            Some(sasl)
        } else {
            None
        };
        let tls = if protocol.uses_tls() {
            Some(ClientTlsSettings::from_properties(props)?)
        } else {
            None
        };
        Ok(ClientSecurityConfig {
            protocol,
            sasl,
            tls,
        })
    }
}

fn oauthbearer_token_source(
    props: &HashMap<String, String>,
) -> Result<OAuthBearerTokenSource, ClientConfigError> {
    const TOKEN: &str = "sasl.oauthbearer.token";
    const FILE: &str = "sasl.oauthbearer.token.file";
    let get = |name: &str| props.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    match (get(TOKEN), get(FILE)) {
        (Some(_), Some(_)) => Err(invalid(
            TOKEN,
            "give sasl.oauthbearer.token or sasl.oauthbearer.token.file, not both",
        )),
        (Some(token), None) => {
            check_bearer_token(token).map_err(|reason| invalid(TOKEN, reason))?;
            Ok(OAuthBearerTokenSource::Token(token.to_string()))
        }
        (None, Some(path)) => Ok(OAuthBearerTokenSource::File(PathBuf::from(path))),
        (None, None) => Err(invalid(
            TOKEN,
            "OAUTHBEARER needs a token: sasl.oauthbearer.token (the compact JWT) or \
             sasl.oauthbearer.token.file (a file holding it)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_properties() {
        let p = parse_properties(
            "# comment\n! also\nsecurity.protocol=SASL_SSL\nsasl.mechanism : SCRAM-SHA-512\nkey value with spaces\nlong=a\\\n    b\nesc=x\\u0041\\=\\:\\\\\nempty=\n",
        );
        assert_eq!(p["security.protocol"], "SASL_SSL");
        assert_eq!(p["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(p["key"], "value with spaces");
        assert_eq!(p["long"], "ab");
        assert_eq!(p["esc"], "xA=:\\");
        assert_eq!(p["empty"], "");
    }

    #[test]
    fn jaas_options() {
        let j = parse_jaas_config(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="p w\"x" unquoted=1;"#,
        )
        .unwrap();
        assert_eq!(
            j.login_module,
            "org.apache.kafka.common.security.scram.ScramLoginModule"
        );
        assert_eq!(j.options["username"], "alice");
        assert_eq!(j.options["password"], "p w\"x");
        assert_eq!(j.options["unquoted"], "1");
        for bad in [
            "M required username=\"a\"",
            "M maybe username=\"a\";",
            "M required username=\"a;",
            "M required =x;",
            ";",
        ] {
            assert!(parse_jaas_config(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn random_text_never_panics(text in "[a-z=: \\\\\"#!;\n\tué\\PC]{0,80}") {
            let props = parse_properties(&text);
            let _ = ClientSecurityConfig::from_properties(&props);
            let _ = parse_jaas_config(&text);
        }
    }

    #[test]
    fn oauthbearer_token_settings() {
        let base = "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n";
        let parse = |extra: &str| {
            ClientSecurityConfig::from_properties(&parse_properties(&format!("{base}{extra}")))
        };
        let c = parse("sasl.oauthbearer.token= aaa.bbb-_.c+/c== \n").unwrap();
        let source = c.sasl.unwrap().oauthbearer_token.unwrap();
        assert_eq!(source.load().unwrap(), "aaa.bbb-_.c+/c==");
        assert_eq!(format!("{source:?}"), "Token(<hidden>)");

        // The file is read at each load, so a rewritten token is picked up.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first.token.sig\n").unwrap();
        let c = parse(&format!("sasl.oauthbearer.token.file={}\n", path.display())).unwrap();
        let source = c.sasl.unwrap().oauthbearer_token.unwrap();
        assert_eq!(source.load().unwrap(), "first.token.sig");
        std::fs::write(&path, "second.token.sig").unwrap();
        assert_eq!(source.load().unwrap(), "second.token.sig");
        for bad in ["", "two words", "a\u{1}b", "=abc", "==="] {
            std::fs::write(&path, bad).unwrap();
            assert!(source.load().is_err(), "{bad:?}");
        }
        std::fs::write(&path, vec![b'a'; MAX_TOKEN_FILE_BYTES as usize + 1]).unwrap();
        let err = source.load().unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = source.load().unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read sasl.oauthbearer.token.file"),
            "{err}"
        );

        for bad in [
            "",
            "sasl.oauthbearer.token=has space\n",
            "sasl.oauthbearer.token=a\nsasl.oauthbearer.token.file=/t\n",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("sasl.oauthbearer.token"), "{bad}: {err}");
            assert!(!err.contains("has space"), "the token is not echoed: {err}");
        }
        // The other mechanisms ignore the token settings.
        let c = ClientSecurityConfig::from_properties(&parse_properties(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.oauthbearer.token=x y\n\
             sasl.jaas.config=M required username=\"a\" password=\"b\";\n",
        ))
        .unwrap();
        assert!(c.sasl.unwrap().oauthbearer_token.is_none());
    }

    #[test]
    fn command_config() {
        let text = "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n  username=\"alice\" password=\"secret\";\nssl.truststore.type=PEM\nssl.truststore.location=/ca.pem\n";
        let c = ClientSecurityConfig::from_properties(&parse_properties(text)).unwrap();
        assert_eq!(c.protocol, SecurityProtocol::SaslSsl);
        let sasl = c.sasl.unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha256);
        assert_eq!(sasl.username_password(), Some(("alice", "secret")));
        assert!(c.tls.is_some());

        let plain = ClientSecurityConfig::from_properties(&HashMap::new()).unwrap();
        assert_eq!(plain.protocol, SecurityProtocol::Plaintext);
        assert!(plain.sasl.is_none() && plain.tls.is_none());

        for bad in [
            "security.protocol=SASL_PLAINTEXT\n",
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\n",
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.jaas.config=M required username=\"a\";\n",
            "security.protocol=SSL\n",
            "security.protocol=TLS\n",
        ] {
            assert!(ClientSecurityConfig::from_properties(&parse_properties(bad)).is_err(), "{bad}");
        }
    }
}
