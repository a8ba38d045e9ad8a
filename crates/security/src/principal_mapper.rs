//! The principal of a TLS client from its certificate, after Kafka's `SslPrincipalMapper`
//! (`ssl.principal.mapping.rules`) and the RFC 2253 subject string Java's
//! `X500Principal.getName()` gives, which the rules are written against.
//!
//! Rules are tried in order: `DEFAULT` gives the whole distinguished name;
//! `RULE:pattern/replacement/[LU]` applies when the pattern matches the whole name, and gives
//! the name with every match replaced (`$1` etc.), then lower- or upper-cased. No rule
//! applying is an error (Kafka's `NoMatchingRule`): the client fails authentication.
//! Patterns are Rust regexes, a subset of Java's (no look-around or back-references).

use regex::Regex;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalMappingError {
    #[error("Invalid rule: {0}")]
    InvalidRule(String),
    #[error("Invalid rule pattern `{pattern}`: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("No rules apply to {0}")]
    NoMatchingRule(String),
    #[error("Invalid client certificate: {0}")]
    BadCertificate(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        whole: Regex,
        pattern: Regex,
        replacement: String,
        case: Case,
    },
}

/// Kafka's `SslPrincipalMapper`.
#[derive(Debug, Clone)]
pub struct SslPrincipalMapper {
    rules: Vec<Rule>,
}

impl Default for SslPrincipalMapper {
    fn default() -> Self {
        SslPrincipalMapper {
            rules: vec![Rule::Default],
        }
    }
}

/// Reads `pattern/` or `replacement/` where `\x` escapes any character (so `\/` is a
/// slash); returns the text up to the unescaped slash, still escaped, and the rest.
fn take_until_slash(text: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '/' {
            return Some((&text[..i], &text[i + 1..]));
        }
    }
    None
}

/// Java's `Matcher.replaceAll` replacement syntax as the regex crate's (`${n}`, `$$`), with
/// Kafka's treatment of back-references: `$n` for a group the pattern does not have is
/// the literal text `$n`, and Java reads as many digits as still name an existing group.
fn java_replacement(replacement: &str, group_count: usize) -> String {
    let mut out = String::with_capacity(replacement.len() + 8);
    let chars: Vec<char> = replacement.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                match chars.get(i + 1) {
                    Some('$') => out.push_str("$$"),
                    Some(other) => out.push(*other),
                    None => {}
                }
                i += 2;
            }
            '$' => {
                let first = chars.get(i + 1).and_then(|c| c.to_digit(10));
                match first {
                    Some(d) if (d as usize) <= group_count => {
                        let mut n = d as usize;
                        i += 2;
                        while let Some(next) = chars.get(i).and_then(|c| c.to_digit(10)) {
                            let longer = n * 10 + next as usize;
                            if longer > group_count {
                                break;
                            }
                            n = longer;
                            i += 1;
                        }
                        out.push_str(&format!("${{{n}}}"));
                    }
                    _ => {
                        out.push_str("$$");
                        i += 1;
                    }
                }
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    out
}

impl SslPrincipalMapper {
    /// Parses `ssl.principal.mapping.rules` (default `DEFAULT`): rules separated by commas
    /// (a comma inside a pattern or replacement belongs to it), blanks around them ignored.
    pub fn from_rules(rules: &str) -> Result<Self, PrincipalMappingError> {
        let mut parsed = Vec::new();
        let mut rest = rules.trim_start();
        while !rest.is_empty() {
            // An empty rule (",,") is ignored, as in Kafka.
            if let Some(after) = rest.strip_prefix(',') {
                rest = after.trim_start();
                continue;
            }
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                parsed.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let bad = || PrincipalMappingError::InvalidRule(rest.to_string());
                let (pattern, after) = take_until_slash(after).ok_or_else(bad)?;
                let (replacement, after) = take_until_slash(after).ok_or_else(bad)?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Case::Lower, &after[1..]),
                    Some('U') => (Case::Upper, &after[1..]),
                    _ => (Case::Keep, after),
                };
                let compile = |p: &str| {
                    Regex::new(p).map_err(|e| PrincipalMappingError::InvalidPattern {
                        pattern: pattern.to_string(),
                        reason: e.to_string(),
                    })
                };
                let pattern_re = compile(pattern)?;
                let group_count = pattern_re.captures_len().saturating_sub(1);
                parsed.push(Rule::Replace {
                    whole: compile(&format!("^(?:{pattern})$"))?,
                    pattern: pattern_re,
                    replacement: java_replacement(replacement, group_count),
                    case,
                });
                rest = after;
            } else {
                return Err(PrincipalMappingError::InvalidRule(rest.to_string()));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(PrincipalMappingError::InvalidRule(rest.to_string())),
            }
        }
        if parsed.is_empty() {
            parsed.push(Rule::Default);
        }
        Ok(SslPrincipalMapper { rules: parsed })
    }

    /// The principal name for a distinguished name (RFC 2253 form).
    pub fn principal_name(
        &self,
        distinguished_name: &str,
    ) -> Result<String, PrincipalMappingError> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(distinguished_name.to_string()),
                Rule::Replace {
                    whole,
                    pattern,
                    replacement,
                    case,
                } => {
                    if !whole.is_match(distinguished_name) {
                        continue;
                    }
                    let out = pattern
                        .replace_all(distinguished_name, replacement.as_str())
                        .into_owned();
                    return Ok(match case {
                        Case::Keep => out,
                        Case::Lower => out.to_lowercase(),
                        Case::Upper => out.to_uppercase(),
                    });
                }
            }
        }
        Err(PrincipalMappingError::NoMatchingRule(
            distinguished_name.to_string(),
        ))
    }

    /// The principal name of a client certificate (DER), through its subject.
    pub fn principal_name_of_certificate(
        &self,
        der: &[u8],
    ) -> Result<String, PrincipalMappingError> {
        self.principal_name(&subject_rfc2253(der)?)
    }
}

/// The keywords Java's RFC 2253 output uses; other attributes are written as `OID=#hex`.
fn attribute_keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253 section 2.4's escaping of an attribute value, as Java's `AVA.toRFC2253String`
/// does it: `,=+<>#;"\\` anywhere, leading and trailing spaces, NUL as `\\00`.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let chars: Vec<char> = value.chars().collect();
    let leading = chars.iter().take_while(|c| **c == ' ').count();
    let trailing_from = chars.len() - chars.iter().rev().take_while(|c| **c == ' ').count();
    for (i, c) in chars.iter().enumerate() {
        if *c == '\u{0}' {
            out.push_str("\\00");
            continue;
        }
        let special =
            ",=+<>#;\"\\".contains(*c) || (*c == ' ' && (i < leading || i >= trailing_from));
        if special {
            out.push('\\');
        }
        out.push(*c);
    }
    out
}

fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// The certificate's subject as Java's `X500Principal.getName()` writes it (RFC 2253):
/// the most specific RDN first, `,` between RDNs and `+` inside a multi-valued one.
pub fn subject_rfc2253(der: &[u8]) -> Result<String, PrincipalMappingError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| PrincipalMappingError::BadCertificate(e.to_string()))?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut parts = Vec::new();
        for atv in rdn.iter() {
            let oid = atv.attr_type().to_id_string();
            let part = match (attribute_keyword(&oid), atv.as_str()) {
                (Some(keyword), Ok(value)) => format!("{keyword}={}", escape_value(value)),
                _ => {
                    let value = atv.attr_value();
                    let mut encoded = vec![value.header.tag().0 as u8];
                    der_length(value.data.len(), &mut encoded);
                    encoded.extend_from_slice(value.data);
                    let hex: String = encoded.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{oid}=#{hex}")
                }
            };
            parts.push(part);
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rule_examples() {
        // The examples of Kafka's documentation for ssl.principal.mapping.rules.
        let m = SslPrincipalMapper::from_rules(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT",
        )
        .unwrap();
        assert_eq!(
            m.principal_name("CN=kafka-server1,OU=ServiceUsers,O=Org,C=US")
                .unwrap(),
            "kafka-server1"
        );
        assert_eq!(
            m.principal_name("CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=Santa Clara,ST=CA,C=US")
                .unwrap(),
            "duke@javasoft"
        );
        assert_eq!(
            m.principal_name("OU=x,cn=Admin.User,O=y").unwrap(),
            "admin.user"
        );
        assert_eq!(m.principal_name("O=nothing").unwrap(), "O=nothing");
    }

    #[test]
    fn upper_case_escapes_and_no_match() {
        let m = SslPrincipalMapper::from_rules("RULE:^CN=([^,]*)(,.*)?$/$1\\/x/U").unwrap();
        assert_eq!(m.principal_name("CN=alice,O=y").unwrap(), "ALICE/X");
        assert_eq!(
            m.principal_name("O=y").unwrap_err(),
            PrincipalMappingError::NoMatchingRule("O=y".into())
        );
        // A comma inside a pattern is part of it, not a separator.
        let m = SslPrincipalMapper::from_rules(" RULE:^CN=(.*),O=(.*)$/$2-$1/ , DEFAULT ").unwrap();
        assert_eq!(m.principal_name("CN=a,O=b").unwrap(), "b-a");
        assert_eq!(m.principal_name("C=x").unwrap(), "C=x");
        assert_eq!(
            SslPrincipalMapper::from_rules("")
                .unwrap()
                .principal_name("C=x")
                .unwrap(),
            "C=x"
        );
    }

    #[test]
    fn invalid_rules() {
        for bad in [
            "RULE:abc",
            "RULE:a/b",
            "DEFAULT,junk",
            "DEFAULTX",
            "RULE:(/x/",
        ] {
            assert!(SslPrincipalMapper::from_rules(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn java_replacement_syntax() {
        assert_eq!(java_replacement("$1a", 1), "${1}a");
        assert_eq!(java_replacement("\\$x", 1), "$$x");
        assert_eq!(java_replacement("a$", 1), "a$$");
        // Kafka: a group the pattern lacks is literal; Java takes digits while a group exists.
        assert_eq!(java_replacement("$1@$4", 3), "${1}@$$4");
        assert_eq!(java_replacement("$12", 3), "${1}2");
        assert_eq!(java_replacement("$12", 12), "${12}");
        let m = SslPrincipalMapper::from_rules("RULE:^CN=(.*),O=(.*)$/$1@$4/,,DEFAULT").unwrap();
        assert_eq!(m.principal_name("CN=a,O=b").unwrap(), "a@$4");
    }

    #[test]
    fn rfc2253_escaping() {
        assert_eq!(escape_value("a,b"), "a\\,b");
        assert_eq!(escape_value(" #x "), "\\ \\#x\\ ");
        assert_eq!(escape_value("a=b#c"), "a\\=b\\#c");
        assert_eq!(escape_value("  a b  "), "\\ \\ a b\\ \\ ");
        assert_eq!(escape_value("a\u{0}"), "a\\00");
        assert!(subject_rfc2253(b"garbage").is_err());
    }

    /// A certificate made by openssl with a multi-valued RDN and an attribute Java has no
    /// keyword for (emailAddress): the string is what `X500Principal.getName()` gives.
    #[test]
    fn subject_as_java_writes_it() {
        let der = include_bytes!("../testdata/subject-test-only.der");
        assert_eq!(
            subject_rfc2253(der).unwrap(),
            "1.2.840.113549.1.9.1=#16076440782e6f7267,CN=Duke+UID=42,OU=JavaSoft,O=Sun\\, Inc,L=Santa Clara,ST=CA,C=US"
        );
    }

    proptest::proptest! {
        #[test]
        fn random_der_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = subject_rfc2253(&bytes);
        }

        #[test]
        fn random_rules_never_panic(rules in "[A-Z:/,$\\\\()*.^ LU0-9a-z]{0,40}", dn in "[A-Za-z=, ]{0,30}") {
            if let Ok(m) = SslPrincipalMapper::from_rules(&rules) {
                let _ = m.principal_name(&dn);
            }
        }
    }
}
