//! A throwaway S3-compatible server for tests: `s3s-fs` (built once by
//! scripts/install-test-deps.sh into `.cache/s3s-fs`) on a free loopback port over HTTP,
//! storing in a temporary directory, killed and removed on drop. It can be stopped and started
//! again on the same port with its data kept (an object store outage).
//!
//! The binary is looked for in `STROM_S3S_FS_BIN`, then the workspace's `.cache/s3s-fs/bin`,
//! then `PATH`; when none is found the test panics with one line naming the install step.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{Credentials, ObjectStoreConfig};

pub const TEST_ACCESS_KEY: &str = "strom-test-access";
pub const TEST_SECRET_KEY: &str = "strom-test-secret";
pub const TEST_BUCKET: &str = "strom-test";

pub const MISSING_BINARY: &str = "s3s-fs not found: run scripts/install-test-deps.sh (it builds s3s-fs into .cache/s3s-fs) or set STROM_S3S_FS_BIN";

pub struct TestS3 {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
}

fn find_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STROM_S3S_FS_BIN").map(PathBuf::from) {
        if p.is_file() {
            return p;
        }
    }
    let cached = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/s3s-fs/bin/s3s-fs");
    if cached.is_file() {
        return cached;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("s3s-fs").is_file() {
                return d.join("s3s-fs");
            }
        }
    }
    panic!("{MISSING_BINARY}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

impl TestS3 {
    /// A server with one bucket, [`TEST_BUCKET`].
    pub fn start() -> TestS3 {
        let dir = tempfile::Builder::new()
            .prefix("strom-s3-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        // s3s-fs keeps a bucket as a directory under its root.
        std::fs::create_dir_all(dir.path().join("root").join(TEST_BUCKET))
            .unwrap_or_else(|e| panic!("bucket dir: {e}"));
        let s3 = TestS3 {
            dir,
            bin: find_binary(),
            port: free_port(),
            child: Mutex::new(None),
        };
        s3.resume();
        s3
    }

    /// `object.store.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A configuration for this server: path style, its credentials, `prefix` in the bucket.
    pub fn config(&self, prefix: &str) -> ObjectStoreConfig {
        let mut c = ObjectStoreConfig::from_url(&format!("s3://{TEST_BUCKET}/{prefix}"))
            .unwrap_or_else(|e| panic!("{e}"));
        c.endpoint = Some(self.endpoint());
        c.path_style = true;
        c.credentials = Credentials {
            access_key_id: Some(TEST_ACCESS_KEY.into()),
            secret_access_key: Some(TEST_SECRET_KEY.into()),
            session_token: None,
        };
        c
    }

    /// Where the bucket's objects are on disk.
    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join("root").join(TEST_BUCKET)
    }

    /// Kills the server (its data stays): what an outage looks like to the client.
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port, waiting until it accepts connections.
    pub fn resume(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if child.is_some() {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("s3s-fs.log"))
            .unwrap_or_else(|e| panic!("s3s-fs log: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let port = self.port.to_string();
        let root = self.dir.path().join("root");
        let c = Command::new(&self.bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--access-key",
                TEST_ACCESS_KEY,
                "--secret-key",
                TEST_SECRET_KEY,
            ])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        *child = Some(c);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on {} within 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.stop();
    }
}
