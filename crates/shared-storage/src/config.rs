//! The `object.store.*` settings and the credentials taken from the environment.

use std::fmt;
use std::time::Duration;

use crate::error::SharedStorageError;

/// `object.store.produce.linger.ms` default: how long the intake waits for more batches before
/// it PUTs an object. Each PUT is a billable request and a PostgreSQL transaction, so a longer
/// linger means fewer, larger objects and more produce latency.
pub const DEFAULT_PRODUCE_LINGER_MS: u64 = 5;
/// `object.store.produce.max.bytes` default: an object is PUT as soon as this much is gathered.
pub const DEFAULT_PRODUCE_MAX_BYTES: usize = 8 * 1024 * 1024;
/// `object.store.produce.max.in.flight.objects` default: intake objects gathered and being PUT
/// or committed at once (Kafka's producer has `max.in.flight.requests.per.connection`, 5).
/// PUTs overlap; commits stay in object order on one connection, so one object's commit
/// overlaps the next ones' uploads. 1 is the unpipelined intake (gather, PUT, commit, repeat).
pub const DEFAULT_PRODUCE_MAX_IN_FLIGHT_OBJECTS: usize = 4;
/// `object.store.request.timeout.ms` default: one PUT or GET, retries included, before the
/// client is answered a retriable error.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// `object.store.cache.max.bytes` default: the broker's cache of fetched byte ranges.
pub const DEFAULT_CACHE_MAX_BYTES: usize = 256 * 1024 * 1024;

/// Where and how the record bytes are stored.
#[derive(Clone)]
pub struct ObjectStoreConfig {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `object.store.endpoint`: an S3-compatible server's URL; None for AWS itself.
    pub endpoint: Option<String>,
    /// `object.store.region`.
    pub region: String,
    /// `object.store.path.style`: `http://host/bucket/key` rather than `http://bucket.host/key`
    /// (MinIO, s3s-fs, Garage and most self-hosted servers need it).
    pub path_style: bool,
    pub produce_linger_ms: u64,
    pub produce_max_bytes: usize,
    pub produce_max_in_flight_objects: usize,
    pub request_timeout_ms: u64,
    pub cache_max_bytes: usize,
    pub credentials: Credentials,
}

/// AWS credentials; Debug never shows the secret parts.
#[derive(Clone, Default)]
pub struct Credentials {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl Credentials {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Credentials {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Credentials {
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
            session_token: get("AWS_SESSION_TOKEN"),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &shown(&self.secret_access_key))
            .field("session_token", &shown(&self.session_token))
            .finish()
    }
}

impl fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("produce_linger_ms", &self.produce_linger_ms)
            .field("produce_max_bytes", &self.produce_max_bytes)
            .field(
                "produce_max_in_flight_objects",
                &self.produce_max_in_flight_objects,
            )
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl ObjectStoreConfig {
    /// From `object.store.url` (`s3://BUCKET/PREFIX`), with every other setting at its
    /// default and the credentials from the environment.
    pub fn from_url(url: &str) -> Result<ObjectStoreConfig, SharedStorageError> {
        let bad =
            |why: &str| SharedStorageError::Config(format!("object.store.url {url:?}: {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        if !bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(bad(
                "a bucket name is lowercase letters, digits, '-' and '.'",
            ));
        }
        Ok(ObjectStoreConfig {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            region: "us-east-1".to_string(),
            path_style: false,
            produce_linger_ms: DEFAULT_PRODUCE_LINGER_MS,
            produce_max_bytes: DEFAULT_PRODUCE_MAX_BYTES,
            produce_max_in_flight_objects: DEFAULT_PRODUCE_MAX_IN_FLIGHT_OBJECTS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            credentials: Credentials::from_env(),
        })
    }

    /// From a broker's settings by name: None when `object.store.url` is not among them (the
    /// broker keeps local logs); other `object.store.*` names are applied, anything else is
    /// left to the broker. Credentials come from the environment.
    pub fn from_settings<'a>(
        settings: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Result<Option<ObjectStoreConfig>, SharedStorageError> {
        let Some((_, url)) = settings
            .clone()
            .into_iter()
            .find(|(name, value)| *name == "object.store.url" && !value.is_empty())
        else {
            return Ok(None);
        };
        let mut config = ObjectStoreConfig::from_url(url)?;
        for (name, value) in settings {
            if name.starts_with("object.store.")
                && name != "object.store.url"
                && !config.set(name, value)?
            {
                return Err(SharedStorageError::Config(format!(
                    "unknown setting {name}"
                )));
            }
        }
        Ok(Some(config))
    }

    /// Applies one `object.store.*` setting by its Kafka-style name; false if the name is not
    /// one of them.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, SharedStorageError> {
        let number = |v: &str| {
            v.trim().parse::<u64>().map_err(|_| {
                SharedStorageError::Config(format!(
                    "{name}: expected a non-negative integer, got {v:?}"
                ))
            })
        };
        match name {
            "object.store.endpoint" => {
                self.endpoint = Some(value.to_string()).filter(|v| !v.is_empty())
            }
            "object.store.region" => self.region = value.to_string(),
            "object.store.path.style" => {
                self.path_style = match value.trim() {
                    "true" => true,
                    "false" => false,
                    v => {
                        return Err(SharedStorageError::Config(format!(
                            "{name}: expected true or false, got {v:?}"
                        )))
                    }
                }
            }
            "object.store.produce.linger.ms" => self.produce_linger_ms = number(value)?,
            "object.store.produce.max.bytes" => {
                self.produce_max_bytes = usize::try_from(number(value)?.max(1))
                    .map_err(|_| SharedStorageError::Config(format!("{name}: too large")))?
            }
            "object.store.produce.max.in.flight.objects" => {
                let n = number(value)?;
                // A semaphore's permits: at least one, and a bound no store needs more than.
                if !(1..=1024).contains(&n) {
                    return Err(SharedStorageError::Config(format!(
                        "{name}: expected 1 to 1024, got {n}"
                    )));
                }
                self.produce_max_in_flight_objects = n as usize;
            }
            "object.store.request.timeout.ms" => self.request_timeout_ms = number(value)?.max(1),
            "object.store.cache.max.bytes" => {
                self.cache_max_bytes = usize::try_from(number(value)?)
                    .map_err(|_| SharedStorageError::Config(format!("{name}: too large")))?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.produce_linger_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The key of a new intake object: time first, so a listing runs in write order.
    pub fn intake_key(&self, node_id: i32, now_ms: i64) -> String {
        let name = format!(
            "intake/{now_ms:013}-{node_id}-{}.batches",
            uuid::Uuid::new_v4().simple()
        );
        if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_gives_bucket_and_prefix() {
        let c = ObjectStoreConfig::from_url("s3://strom-data/cluster/a/").expect("valid");
        assert_eq!(c.bucket, "strom-data");
        assert_eq!(c.prefix, "cluster/a");
        assert!(c
            .intake_key(3, 1)
            .starts_with("cluster/a/intake/0000000000001-3-"));
        let c = ObjectStoreConfig::from_url("s3://b").expect("valid");
        assert_eq!(c.prefix, "");
        assert!(c.intake_key(3, 1).starts_with("intake/"));
        for bad in ["http://b/p", "s3://", "s3:///p", "s3://Upper/p"] {
            assert!(ObjectStoreConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_by_name() {
        let mut c = ObjectStoreConfig::from_url("s3://b/p").expect("valid");
        assert!(c.set("object.store.path.style", "true").expect("ok"));
        assert!(c.path_style);
        assert!(c.set("object.store.produce.linger.ms", "20").expect("ok"));
        assert_eq!(c.linger(), Duration::from_millis(20));
        assert_eq!(
            c.produce_max_in_flight_objects,
            DEFAULT_PRODUCE_MAX_IN_FLIGHT_OBJECTS
        );
        assert!(c
            .set("object.store.produce.max.in.flight.objects", "1")
            .expect("ok"));
        assert_eq!(c.produce_max_in_flight_objects, 1);
        assert!(c
            .set("object.store.produce.max.in.flight.objects", "0")
            .is_err());
        assert!(c.set("object.store.path.style", "yes").is_err());
        assert!(c.set("object.store.produce.max.bytes", "-1").is_err());
        assert!(!c.set("log.retention.ms", "1").expect("ok"));
    }

    #[test]
    fn from_a_brokers_settings() {
        let none = ObjectStoreConfig::from_settings([("num.partitions", "3")]).expect("ok");
        assert!(none.is_none(), "no object.store.url: local logs");
        let c = ObjectStoreConfig::from_settings([
            ("object.store.endpoint", "http://127.0.0.1:9000"),
            ("object.store.url", "s3://b/p"),
            ("object.store.path.style", "true"),
            ("num.partitions", "3"),
        ])
        .expect("ok")
        .expect("configured");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(c.path_style);
        let typo = ObjectStoreConfig::from_settings([
            ("object.store.url", "s3://b/p"),
            ("object.store.regoin", "x"),
        ]);
        assert!(typo.is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut c = ObjectStoreConfig::from_url("s3://b/p").expect("valid");
        c.credentials = Credentials {
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("very-secret-key".into()),
            session_token: Some("very-secret-token".into()),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}
