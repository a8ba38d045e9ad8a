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
        })
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), SharedStorageError> {
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
