//! A Kafka client's security settings from its properties file (the CLI's
//! `--command-config FILE`, as kafka-topics.sh takes one): `security.protocol`,
//! `sasl.mechanism`, `sasl.jaas.config` (the login module's options: `username`,
//! `password`, ...) and the `ssl.*` client settings of [`crate::tls::ClientTlsSettings`].

use std::collections::{BTreeMap, HashMap};

use crate::principal::SecurityProtocol;
use crate::sasl::SaslMechanism;
use crate::tls::{ClientTlsSettings, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("Invalid value for {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{0}")]
    Tls(#[from] TlsError),
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

/// A client's SASL settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSasl {
    pub mechanism: SaslMechanism,
    pub jaas: Option<JaasConfig>,
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
            let sasl = ClientSasl { mechanism, jaas };
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
