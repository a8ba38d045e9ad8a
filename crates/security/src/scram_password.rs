//! A password (SASL/PLAIN, HTTP Basic) checked against a user's SCRAM credentials, so one
//! set of users, managed with AlterUserScramCredentials, serves PLAIN as well as SCRAM.
//!
//! The password is run through the credential's salt and iterations (RFC 5802's Hi, 4096 or
//! more PBKDF2 rounds) and must give its StoredKey. That is milliseconds of CPU, too much for
//! every connection or HTTP request of a client that logs in with the same password again and
//! again, so a successful check is remembered ([`ScramPasswordCache`]). A remembered entry is a
//! tag: a keyed MAC, under a key drawn at start-up, of the user, the password and the whole
//! credential it matched. The cache holds no password nor anything a password can be tested
//! against offline, and a credential that changed or went gives other tags, so it is never
//! answered from the cache.
//!
//! [`PlainUsers`] is the broker's PLAIN callback over both sources of users: a user of the
//! listener's JAAS entry is checked there only; any other user against the SCRAM credentials.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ring::hmac;

use crate::ct_eq;
use crate::plain::{PlainCallback, StaticPlainUsers};
use crate::sasl::ScramCredentialStore;
use crate::scram::{ScramCredential, ScramMechanism};

/// How many verified (user, password, credential) tags are kept by default: far more than a
/// broker's distinct users, and 32 bytes each.
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;

/// Checks passwords against SCRAM credentials, remembering the ones that matched.
pub struct ScramPasswordCache {
    key: hmac::Key,
    max_entries: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    tags: HashSet<[u8; 32]>,
    /// Insertion order, for evicting the oldest when full.
    order: VecDeque<[u8; 32]>,
}

impl Default for ScramPasswordCache {
    fn default() -> Self {
        ScramPasswordCache::new(DEFAULT_CACHE_ENTRIES)
    }
}

impl std::fmt::Debug for ScramPasswordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramPasswordCache")
            .field("max_entries", &self.max_entries)
            .field("entries", &self.len())
            .finish()
    }
}

/// A credential with a salt no client can know, checked when the user has none, so an
/// unknown user costs what a wrong password does (no telling users apart by timing).
fn decoy_credential() -> &'static ScramCredential {
    static DECOY: std::sync::OnceLock<ScramCredential> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut salt = [0u8; 32];
        // Without an entropy source the decoy's salt is fixed; it still matches no password
        // but the one derived below, which is random too or, failing that, fixed and unused.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt);
        let mut password = [0u8; 32];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut password);
        let password: String = password.iter().map(|b| format!("{b:02x}")).collect();
        ScramCredential::derive(
            ScramMechanism::Sha512,
            &password,
            &salt,
            crate::scram::MIN_ITERATIONS,
        )
        .unwrap_or(ScramCredential {
            mechanism: ScramMechanism::Sha512,
            salt: salt.to_vec(),
            stored_key: vec![0; 64],
            server_key: vec![0; 64],
            iterations: crate::scram::MIN_ITERATIONS,
        })
    })
}

impl ScramPasswordCache {
    /// A cache of at most `max_entries` verified tags (at least one).
    pub fn new(max_entries: usize) -> Self {
        let mut key = [0u8; 32];
        // Without an entropy source the key is all zeros: tags can then be computed by
        // anyone who knows a password, which is no worse than knowing the password.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key);
        ScramPasswordCache {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            max_entries: max_entries.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many verified tags are held.
    pub fn len(&self) -> usize {
        self.lock().tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn tag(&self, user: &str, password: &str, c: &ScramCredential) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Every variable-length field is length-prefixed, so no two inputs run together.
        for field in [user.as_bytes(), password.as_bytes(), &c.salt, &c.stored_key] {
            ctx.update(&(field.len() as u64).to_be_bytes());
            ctx.update(field);
        }
        ctx.update(c.mechanism.mechanism_name().as_bytes());
        ctx.update(&c.iterations.to_be_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(&ctx.sign().as_ref()[..32]);
        out
    }

    /// Whether `password` is the one behind any of `credentials` (the user's, any
    /// mechanism). No credential at all is false, after as much work as a wrong password.
    pub fn verify(&self, user: &str, password: &str, credentials: &[ScramCredential]) -> bool {
        if credentials.is_empty() {
            let decoy = decoy_credential();
            let _ = derive_matches(password, decoy);
            return false;
        }
        let tags: Vec<[u8; 32]> = credentials
            .iter()
            .map(|c| self.tag(user, password, c))
            .collect();
        {
            let entries = self.lock();
            if tags.iter().any(|t| entries.tags.contains(t)) {
                return true;
            }
        }
        let Some(i) = credentials.iter().position(|c| derive_matches(password, c)) else {
            return false;
        };
        let mut entries = self.lock();
        if entries.tags.insert(tags[i]) {
            entries.order.push_back(tags[i]);
            while entries.order.len() > self.max_entries {
                if let Some(old) = entries.order.pop_front() {
                    entries.tags.remove(&old);
                }
            }
        }
        true
    }

    /// [`verify`](Self::verify) with the user's credentials of every mechanism from `store`.
    pub fn verify_in(&self, store: &dyn ScramCredentialStore, user: &str, password: &str) -> bool {
        let credentials: Vec<ScramCredential> = [ScramMechanism::Sha512, ScramMechanism::Sha256]
            .into_iter()
            .filter_map(|m| store.credential(user, m))
            .collect();
        self.verify(user, password, &credentials)
    }
}

fn derive_matches(password: &str, stored: &ScramCredential) -> bool {
    ScramCredential::derive(stored.mechanism, password, &stored.salt, stored.iterations)
        .is_ok_and(|d| ct_eq(&d.stored_key, &stored.stored_key))
}

/// The broker's PLAIN users: the listener's JAAS `user_<name>` entries, then the SCRAM
/// credentials of the metadata log for every user the JAAS entry does not name.
pub struct PlainUsers {
    jaas: StaticPlainUsers,
    scram: Option<Arc<dyn ScramCredentialStore>>,
    cache: Arc<ScramPasswordCache>,
}

impl PlainUsers {
    pub fn new(
        jaas: StaticPlainUsers,
        scram: Option<Arc<dyn ScramCredentialStore>>,
        cache: Arc<ScramPasswordCache>,
    ) -> Self {
        PlainUsers { jaas, scram, cache }
    }

    /// Whether any SCRAM credentials are consulted.
    pub fn checks_scram(&self) -> bool {
        self.scram.is_some()
    }
}

impl PlainCallback for PlainUsers {
    fn authenticate(&self, username: &str, password: &str) -> bool {
        if self.jaas.contains(username) {
            return self.jaas.authenticate(username, password);
        }
        match &self.scram {
            Some(store) => self.cache.verify_in(store.as_ref(), username, password),
            None => self.cache.verify(username, password, &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Store {
        creds: Mutex<HashMap<(String, ScramMechanism), ScramCredential>>,
        lookups: AtomicUsize,
    }

    impl Store {
        fn put(&self, user: &str, c: ScramCredential) {
            self.creds
                .lock()
                .unwrap()
                .insert((user.to_string(), c.mechanism), c);
        }
        fn remove(&self, user: &str, m: ScramMechanism) {
            self.creds.lock().unwrap().remove(&(user.to_string(), m));
        }
    }

    impl ScramCredentialStore for Store {
        fn credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            self.creds
                .lock()
                .unwrap()
                .get(&(user.to_string(), m))
                .cloned()
        }
    }

    fn cred(m: ScramMechanism, password: &str) -> ScramCredential {
        ScramCredential::generate(m, password, 4096).unwrap()
    }

    #[test]
    fn right_wrong_and_unknown() {
        let store = Store::default();
        store.put("alice", cred(ScramMechanism::Sha512, "a-pw"));
        store.put("bob", cred(ScramMechanism::Sha256, "b-pw"));
        let cache = ScramPasswordCache::default();
        assert!(cache.verify_in(&store, "alice", "a-pw"));
        assert!(cache.verify_in(&store, "bob", "b-pw"), "SHA-256 too");
        assert!(!cache.verify_in(&store, "alice", "b-pw"));
        assert!(!cache.verify_in(&store, "bob", "a-pw"));
        assert!(!cache.verify_in(&store, "carol", "a-pw"));
        // Another user's password for a cached user is not served from the cache.
        assert!(!cache.verify_in(&store, "alice", ""));
        assert_eq!(cache.len(), 2, "only successes are remembered");
    }

    #[test]
    fn either_mechanism_of_one_user() {
        let store = Store::default();
        store.put("alice", cred(ScramMechanism::Sha512, "new"));
        store.put("alice", cred(ScramMechanism::Sha256, "old"));
        let cache = ScramPasswordCache::default();
        assert!(cache.verify_in(&store, "alice", "new"));
        assert!(cache.verify_in(&store, "alice", "old"));
        assert!(!cache.verify_in(&store, "alice", "neither"));
    }

    #[test]
    fn a_cached_success_is_fast_and_a_changed_credential_is_not_served_from_the_cache() {
        let store = Store::default();
        // A high iteration count makes a derivation measurable against a cache hit.
        let slow = ScramCredential::generate(ScramMechanism::Sha512, "pw", 16384).unwrap();
        store.put("alice", slow);
        let cache = ScramPasswordCache::default();
        let t = std::time::Instant::now();
        assert!(cache.verify_in(&store, "alice", "pw"));
        let first = t.elapsed();
        let t = std::time::Instant::now();
        for _ in 0..10 {
            assert!(cache.verify_in(&store, "alice", "pw"));
        }
        let ten_hits = t.elapsed();
        assert!(
            ten_hits < first,
            "10 cached checks took {ten_hits:?}, one derivation {first:?}"
        );
        // The password changes: the old one is refused at once, the new one checked afresh.
        store.put("alice", cred(ScramMechanism::Sha512, "pw2"));
        assert!(!cache.verify_in(&store, "alice", "pw"));
        assert!(cache.verify_in(&store, "alice", "pw2"));
        // The same password set again with a new salt: a new derivation, still right.
        store.put("alice", cred(ScramMechanism::Sha512, "pw"));
        assert!(cache.verify_in(&store, "alice", "pw"));
        // Deleted: refused although its tag is still cached.
        store.remove("alice", ScramMechanism::Sha512);
        assert!(!cache.verify_in(&store, "alice", "pw"));
    }

    #[test]
    fn the_cache_is_bounded() {
        let store = Store::default();
        let cache = ScramPasswordCache::new(3);
        for i in 0..10 {
            let user = format!("u{i}");
            store.put(&user, cred(ScramMechanism::Sha256, "pw"));
            assert!(cache.verify_in(&store, &user, "pw"));
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        // An evicted user is still verified, by derivation.
        assert!(cache.verify_in(&store, "u0", "pw"));
    }

    #[test]
    fn tags_are_keyed_per_cache() {
        let c = cred(ScramMechanism::Sha256, "pw");
        let a = ScramPasswordCache::default();
        let b = ScramPasswordCache::default();
        assert_ne!(a.tag("u", "pw", &c), b.tag("u", "pw", &c));
        assert_ne!(a.tag("u", "pw", &c), a.tag("u", "pw2", &c));
        assert_ne!(
            a.tag("up", "w", &c),
            a.tag("u", "pw", &c),
            "fields do not run together"
        );
    }

    #[test]
    fn plain_users_jaas_first_then_scram() {
        let store = Arc::new(Store::default());
        store.put("carol", cred(ScramMechanism::Sha512, "carol-scram"));
        store.put("alice", cred(ScramMechanism::Sha512, "alice-scram"));
        let users = PlainUsers::new(
            StaticPlainUsers::new([("alice".to_string(), "alice-jaas".to_string())]),
            Some(store.clone() as Arc<dyn ScramCredentialStore>),
            Arc::new(ScramPasswordCache::default()),
        );
        let auth = |m: &[u8]| crate::plain::authenticate(m, &users);
        assert_eq!(auth(b"\0carol\0carol-scram").unwrap(), "carol");
        assert_eq!(auth(b"\0alice\0alice-jaas").unwrap(), "alice");
        // A JAAS user is checked there only, not against a SCRAM credential of the same name.
        let wrong = auth(b"\0alice\0alice-scram").unwrap_err();
        let unknown = auth(b"\0dave\0carol-scram").unwrap_err();
        let bad = auth(b"\0carol\0nope").unwrap_err();
        assert_eq!(wrong, crate::plain::PlainError::InvalidCredentials);
        assert_eq!(wrong.to_string(), unknown.to_string());
        assert_eq!(bad.to_string(), unknown.to_string());
        let no_scram = PlainUsers::new(
            StaticPlainUsers::default(),
            None,
            Arc::new(ScramPasswordCache::default()),
        );
        assert!(!no_scram.authenticate("carol", "carol-scram"));
    }
}
