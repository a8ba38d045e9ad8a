//! `cluster.metadata.url`: where the cluster's PostgreSQL is, with the password kept out of
//! every text this crate makes (logs, errors, `Debug`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::PgMetadataError;

/// How long a connection attempt may take before it is a retriable failure, unless the URL
/// says (`connect_timeout`, seconds, per host as in libpq).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The same with several hosts (a failover URL): a host that drops packets (a crashed
/// machine) must cost little before the next one is tried.
const CONNECT_TIMEOUT_PER_HOST: Duration = Duration::from_secs(2);
/// A peer that stops answering (a cut network) is noticed within about this long instead of
/// a call hanging: TCP keepalives plus the kernel's user timeout.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// A parsed `postgres://USER:PASS@HOST:PORT/DB` (or `postgresql://`). Its `Display` and
/// `Debug` show the URL with the password replaced by `***`.
#[derive(Clone)]
pub struct MetadataUrl {
    config: postgres::Config,
    redacted: String,
    /// The password as written in the URL and as decoded, to scrub from server and driver
    /// messages before they become errors.
    secrets: Vec<String>,
}

impl MetadataUrl {
    pub fn parse(url: &str) -> Result<MetadataUrl, PgMetadataError> {
        let (redacted, secrets) = redact_url(url);
        let invalid = |reason: String| PgMetadataError::InvalidUrl {
            url: redacted.clone(),
            reason: scrub(&reason, &secrets),
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "expected postgres://USER:PASS@HOST:PORT/DB".to_string(),
            ));
        }
        let mut config = postgres::Config::from_str(url).map_err(|e| invalid(e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(invalid("no host".to_string()));
        }
        let mut secrets = secrets;
        if let Some(p) = config.get_password() {
            secrets.push(String::from_utf8_lossy(p).into_owned());
        }
        secrets.retain(|s| !s.is_empty());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(if config.get_hosts().len() > 1 {
                CONNECT_TIMEOUT_PER_HOST
            } else {
                CONNECT_TIMEOUT
            });
        }
        config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .tcp_user_timeout(TCP_USER_TIMEOUT)
            .application_name("strom");
        Ok(MetadataUrl {
            config,
            redacted,
            secrets,
        })
    }

    pub(crate) fn config(&self) -> &postgres::Config {
        &self.config
    }

    /// `text` with every form of the password replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets)
    }
}

impl fmt::Display for MetadataUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for MetadataUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetadataUrl({})", self.redacted)
    }
}

fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// The URL with the password of its user-info part replaced, and the password as written
/// and percent-decoded. Done by hand so that even a URL the driver cannot parse is shown
/// without its password.
fn redact_url(url: &str) -> (String, Vec<String>) {
    let Some(scheme_end) = url.find("://") else {
        // Not a URL at all: it may be anything, including a bare password.
        return ("<not a postgres:// URL>".to_string(), vec![url.to_string()]);
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return (url.to_string(), Vec::new());
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return (url.to_string(), Vec::new());
    };
    let password = &userinfo[colon + 1..];
    let mut secrets = vec![password.to_string()];
    let decoded = percent_decode(password);
    if decoded != password {
        secrets.push(decoded);
    }
    let redacted = format!(
        "{}{}:***{}",
        &url[..rest_start],
        &userinfo[..colon],
        &url[rest_start + at..]
    );
    (redacted, secrets)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_redacted_in_display_debug_and_errors() {
        let u = MetadataUrl::parse("postgres://strom:s3cr%40t@db.example:5432/meta").unwrap();
        for text in [u.to_string(), format!("{u:?}")] {
            assert!(!text.contains("s3cr"), "password shown in {text}");
            assert!(
                text.contains("postgres://strom:***@db.example:5432/meta"),
                "{text}"
            );
        }
        assert_eq!(
            u.scrub("auth failed for s3cr@t and s3cr%40t"),
            "auth failed for *** and ***"
        );

        for bad in [
            "postgres://strom:hunter2@db:notaport/meta",
            "mysql://strom:hunter2@db/meta",
            "hunter2",
        ] {
            let e = MetadataUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "password in error: {e}");
            assert!(e.contains("cluster.metadata.url"), "{e}");
        }
    }

    #[test]
    fn a_failover_url_keeps_its_hosts_and_a_short_connect_timeout() {
        let u = MetadataUrl::parse(
            "postgres://strom:pw@10.0.0.1:5432,10.0.0.2:5433/meta?target_session_attrs=read-write",
        )
        .unwrap();
        let c = u.config();
        assert_eq!(c.get_hosts().len(), 2);
        assert_eq!(c.get_ports(), &[5432, 5433]);
        assert_eq!(
            c.get_target_session_attrs(),
            postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT_PER_HOST));

        let one = MetadataUrl::parse("postgres://strom@db:5432/meta").unwrap();
        assert_eq!(one.config().get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        // The URL's own value wins (it used to be overwritten).
        let given = MetadataUrl::parse("postgres://strom@a,b/meta?connect_timeout=7").unwrap();
        assert_eq!(
            given.config().get_connect_timeout(),
            Some(&Duration::from_secs(7))
        );
    }

    #[test]
    fn a_url_without_password_is_shown_whole() {
        let u = MetadataUrl::parse("postgresql://strom@127.0.0.1:5433/meta").unwrap();
        assert_eq!(u.to_string(), "postgresql://strom@127.0.0.1:5433/meta");
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
