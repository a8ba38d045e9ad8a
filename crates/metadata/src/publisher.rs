//! What a committed metadata change hands to the rest of the broker, as Kafka's
//! `MetadataLoader` hands each delta to its `MetadataPublisher`s: the replica manager, the
//! group coordinator, metrics. Publishers run in registration order, once per commit, after
//! the change is durable, each given the new image; none of them can veto a change. Readers
//! of the loader's image (clients' requests) see the new image once every publisher has run.

use std::collections::HashSet;
use std::sync::Arc;

use thiserror::Error;

use crate::image::MetadataImage;
use crate::records::MetadataRecord;

/// One committed change: the image before it and the records that made the next one.
pub struct MetadataDelta {
    pub previous: Arc<MetadataImage>,
    pub records: Vec<MetadataRecord>,
}

impl MetadataDelta {
    /// Names of the topics present before the change and gone after it.
    pub fn deleted_topic_names(&self, next: &MetadataImage) -> HashSet<String> {
        self.previous
            .topics
            .values()
            .filter(|t| next.topic_by_id(&t.id).is_none())
            .map(|t| t.name.clone())
            .collect()
    }
}

#[derive(Debug, Error)]
#[error("metadata publisher {publisher}: {reason}")]
pub struct PublishError {
    pub publisher: &'static str,
    pub reason: String,
}

pub trait MetadataPublisher: Send + Sync {
    /// For logs and errors.
    fn name(&self) -> &'static str;

    /// Brings this publisher's state in line with `image`, which `delta` produced.
    fn on_metadata_update(
        &self,
        delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError>;
}
