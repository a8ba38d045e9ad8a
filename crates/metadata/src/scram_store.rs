//! The SASL server's SCRAM credential store over the metadata: each lookup reads the image in
//! force, so a credential altered with AlterUserScramCredentials counts from the next
//! authentication on, on every connection, with nothing to refresh.

use std::sync::Arc;

use strom_security::sasl::ScramCredentialStore;
use strom_security::scram::{ScramCredential, ScramMechanism};

use crate::loader::MetadataLoader;

/// Cheap to clone; a connection holds one as `Arc<dyn ScramCredentialStore>`.
#[derive(Clone)]
pub struct ImageScramCredentialStore {
    loader: Arc<MetadataLoader>,
}

impl ImageScramCredentialStore {
    pub fn new(loader: Arc<MetadataLoader>) -> Self {
        ImageScramCredentialStore { loader }
    }
}

impl ScramCredentialStore for ImageScramCredentialStore {
    fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.loader
            .image()
            .scram_credential(user, mechanism)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::MetadataImage;
    use crate::publisher::MetadataDelta;
    use crate::records::MetadataRecord;

    fn upsert(name: &str, c: &ScramCredential) -> MetadataRecord {
        MetadataRecord::UserScramCredential {
            name: name.into(),
            mechanism: c.mechanism.type_code(),
            salt: c.salt.clone(),
            stored_key: c.stored_key.clone(),
            server_key: c.server_key.clone(),
            iterations: c.iterations as i32,
        }
    }

    fn publish(loader: &MetadataLoader, records: Vec<MetadataRecord>) {
        let previous = loader.image();
        let mut next = (*previous).clone();
        for (i, r) in records.iter().enumerate() {
            next.apply(previous.offset + 1 + i as i64, r).unwrap();
        }
        loader.publish(MetadataDelta { previous, records }, next);
    }

    #[test]
    fn looks_up_the_image_in_force() {
        let loader = Arc::new(MetadataLoader::new(MetadataImage::empty()));
        let store = ImageScramCredentialStore::new(loader.clone());
        assert!(store.credential("alice", ScramMechanism::Sha256).is_none());
        let c = ScramCredential::generate(ScramMechanism::Sha256, "secret", 4096).unwrap();
        publish(&loader, vec![upsert("alice", &c)]);
        assert_eq!(store.credential("alice", ScramMechanism::Sha256), Some(c));
        assert!(store.credential("alice", ScramMechanism::Sha512).is_none());
        assert!(store.credential("bob", ScramMechanism::Sha256).is_none());
        publish(
            &loader,
            vec![MetadataRecord::RemoveUserScramCredential {
                name: "alice".into(),
                mechanism: ScramMechanism::Sha256.type_code(),
            }],
        );
        assert!(store.credential("alice", ScramMechanism::Sha256).is_none());
    }
}
