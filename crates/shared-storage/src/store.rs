//! The object store: one PUT per intake object, byte-range GETs for fetches.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig};

use crate::config::ObjectStoreConfig;
use crate::error::SharedStorageError;

#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    timeout: Duration,
    faults: Arc<PutFaults>,
}

/// Faults tests inject into PUTs (a store that fails one request while others succeed, or
/// answers slowly, which stopping the server cannot give). Unset in a broker: two relaxed
/// loads per PUT.
#[derive(Default)]
pub(crate) struct PutFaults {
    /// PUTs answered so far (numbered from 1).
    count: std::sync::atomic::AtomicU64,
    /// This PUT (by number) fails; 0: none.
    fail_number: std::sync::atomic::AtomicU64,
    /// Every PUT waits this long first.
    delay_ms: std::sync::atomic::AtomicU64,
    /// PUTs under way now, and the most ever at once (what pipelining shows as).
    current: std::sync::atomic::AtomicU64,
    most_at_once: std::sync::atomic::AtomicU64,
}

impl Store {
    pub fn new(config: &ObjectStoreConfig) -> Result<Store, SharedStorageError> {
        // A store outage must reach the client as a retriable error within the request
        // timeout, not after object_store's default of ten retries over three minutes: the
        // Kafka client retries itself.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: config.request_timeout(),
        };
        let mut options = ClientOptions::new()
            .with_timeout(config.request_timeout())
            .with_connect_timeout(config.request_timeout().min(Duration::from_secs(5)));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_retry(retry);
        if let Some(endpoint) = &config.endpoint {
            if endpoint.starts_with("http://") {
                options = options.with_allow_http(true);
            }
            builder = builder.with_endpoint(endpoint);
        }
        let c = &config.credentials;
        if let (Some(id), Some(secret)) = (&c.access_key_id, &c.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = &c.session_token {
                builder = builder.with_token(token);
            }
        }
        let inner = builder
            .with_client_options(options)
            .build()
            .map_err(|e| SharedStorageError::Config(format!("object store: {e}")))?;
        Ok(Store {
            inner: Arc::new(inner),
            timeout: config.request_timeout(),
            faults: Arc::default(),
        })
    }

    /// Makes PUT number `fail_number` (from 1, counting every PUT so far; 0: none) fail and
    /// every PUT wait `delay_ms` first.
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_put_faults(&self, fail_number: u64, delay_ms: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.faults.fail_number.store(fail_number, Relaxed);
        self.faults.delay_ms.store(delay_ms, Relaxed);
    }

    /// The most PUTs ever under way at once.
    #[cfg(any(test, feature = "testing"))]
    pub fn most_puts_at_once(&self) -> u64 {
        self.faults
            .most_at_once
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), SharedStorageError> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.faults.current.fetch_add(1, Relaxed) + 1;
        self.faults.most_at_once.fetch_max(now, Relaxed);
        let result = self.put_counted(key, bytes).await;
        self.faults.current.fetch_sub(1, Relaxed);
        result
    }

    async fn put_counted(&self, key: &str, bytes: Bytes) -> Result<(), SharedStorageError> {
        use std::sync::atomic::Ordering::Relaxed;
        let number = self.faults.count.fetch_add(1, Relaxed) + 1;
        let delay_ms = self.faults.delay_ms.load(Relaxed);
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        if self.faults.fail_number.load(Relaxed) == number {
            return Err(SharedStorageError::ObjectStore(format!(
                "PUT {key}: injected failure"
            )));
        }
        let path = Path::from(key);
        let put = self.inner.put(&path, PutPayload::from_bytes(bytes));
        match tokio::time::timeout(self.timeout, put).await {
            Ok(r) => r.map(|_| ()).map_err(Into::into),
            Err(_) => Err(SharedStorageError::ObjectStore(format!(
                "PUT {key}: no answer in {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// Deletes an object; one already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), SharedStorageError> {
        let path = Path::from(key);
        match tokio::time::timeout(self.timeout, self.inner.delete(&path)).await {
            Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(SharedStorageError::ObjectStore(format!(
                "DELETE {key}: no answer in {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    pub async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<Bytes, SharedStorageError> {
        let path = Path::from(key);
        let expected = range.end - range.start;
        let get = self.inner.get_range(&path, range);
        let bytes = match tokio::time::timeout(self.timeout, get).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(SharedStorageError::ObjectStore(format!(
                    "GET {key}: no answer in {} ms",
                    self.timeout.as_millis()
                )))
            }
        };
        if bytes.len() as u64 != expected {
            return Err(SharedStorageError::Corrupt(format!(
                "GET {key}: {} bytes for a range of {expected}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}
