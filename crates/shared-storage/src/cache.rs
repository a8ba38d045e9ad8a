//! A bounded cache of batch byte ranges, shared by a broker's partitions: what the leader just
//! wrote (sliced from the object it PUT, no copy) and what fetches got from the store.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

type Key = (String, u64);

pub struct RangeCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Bytes>,
    /// Insertion order: the oldest range is evicted first (a stream is read front to back).
    order: VecDeque<Key>,
    size_bytes: usize,
}

impl RangeCache {
    pub fn new(max_bytes: usize) -> RangeCache {
        RangeCache {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn get(&self, object_key: &str, byte_start: u64, byte_length: u32) -> Option<Bytes> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .map
            .get(&(object_key.to_string(), byte_start))
            .filter(|b| b.len() == byte_length as usize)
            .cloned()
    }

    pub fn insert(&self, object_key: &str, byte_start: u64, bytes: Bytes) {
        if bytes.len() > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = (object_key.to_string(), byte_start);
        let len = bytes.len();
        if let Some(old) = inner.map.insert(key.clone(), bytes) {
            inner.size_bytes -= old.len();
        } else {
            inner.order.push_back(key);
        }
        inner.size_bytes += len;
        while inner.size_bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(gone) = inner.map.remove(&oldest) {
                inner.size_bytes -= gone.len();
            }
        }
    }

    pub fn size_bytes(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .size_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_beyond_its_bound() {
        let cache = RangeCache::new(10);
        cache.insert("a", 0, Bytes::from_static(b"12345"));
        cache.insert("a", 5, Bytes::from_static(b"67890"));
        assert_eq!(cache.size_bytes(), 10);
        cache.insert("b", 0, Bytes::from_static(b"xyz"));
        assert!(cache.get("a", 0, 5).is_none());
        assert_eq!(cache.get("a", 5, 5).as_deref(), Some(&b"67890"[..]));
        assert_eq!(cache.get("b", 0, 3).as_deref(), Some(&b"xyz"[..]));
        assert!(
            cache.get("b", 0, 4).is_none(),
            "a length mismatch is a miss"
        );
        assert_eq!(cache.size_bytes(), 8);
        cache.insert("big", 0, Bytes::from(vec![0u8; 11]));
        assert!(cache.get("big", 0, 11).is_none());
    }
}
