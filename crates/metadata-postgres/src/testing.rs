//! A throwaway PostgreSQL server for tests: Debian's binaries (`initdb`, `pg_ctl`) run on a
//! free loopback port with their data, socket and log in a temporary directory, stopped and
//! removed on drop. Password authentication over TCP, as in production.
//!
//! Binaries are looked for in `STROM_PG_BIN`, then `/usr/lib/postgresql/<newest>/bin`, then
//! `PATH`; when none is found the test panics with one line naming the package. As root
//! (CI), the server runs as the `postgres` user (or `nobody`), since PostgreSQL refuses root.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use postgres::{Client, NoTls};

pub const TEST_USER: &str = "strom";

pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as: Option<String>,
    running: Mutex<bool>,
}

static SHARED: Mutex<Weak<TestPostgres>> = Mutex::new(Weak::new());
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The one line a test fails with when PostgreSQL's server binaries are missing.
pub const MISSING_BINARIES: &str = "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` package (scripts/install-test-deps.sh does) or set STROM_PG_BIN to their directory";

fn find_binaries() -> PathBuf {
    find_binaries_in(
        std::env::var_os("STROM_PG_BIN").map(PathBuf::from),
        Path::new("/usr/lib/postgresql"),
        std::env::var_os("PATH"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `STROM_PG_BIN`, then the newest `<lib_root>/<version>/bin`, then `PATH`.
fn find_binaries_in(
    env_dir: Option<PathBuf>,
    lib_root: &Path,
    path: Option<std::ffi::OsString>,
) -> Result<PathBuf, &'static str> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = env_dir.filter(|d| has_both(d)) {
        return Ok(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(lib_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    if let Some(path) = path {
        for d in std::env::split_paths(&path) {
            if has_both(&d) {
                return Ok(d);
            }
        }
    }
    Err(MISSING_BINARIES)
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn chown_all(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

impl TestPostgres {
    /// A server of its own (for tests that stop or restart it).
    pub fn start() -> TestPostgres {
        let pg = TestPostgres::prepare(format!("pw-{}", uuid::Uuid::new_v4().simple()));
        let data = pg.data_dir();
        let pwfile = pg.dir.path().join("pwfile");
        pg.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                TEST_USER,
                "--pwfile",
                path_str(&pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_on_a_free_port()
    }

    /// A streaming standby of this server (same user and password), started: what a
    /// failover promotes.
    pub fn start_standby(&self) -> TestPostgres {
        let standby = TestPostgres::prepare(self.password.clone());
        let data = standby.data_dir();
        let port = self.port.to_string();
        let ok = standby.run_with_env(
            "pg_basebackup",
            &[
                "-D",
                path_str(&data),
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                TEST_USER,
                "-X",
                "stream",
                "-R",
                "--no-sync",
            ],
            &[("PGPASSWORD", self.password.as_str())],
        );
        assert!(ok, "pg_basebackup failed");
        standby.start_on_a_free_port()
    }

    /// Turns a standby into a primary (`pg_ctl promote`), waiting until it accepts writes.
    pub fn promote(&self) {
        let data = self.data_dir();
        assert!(
            self.run("pg_ctl", &["-D", path_str(&data), "-w", "promote"]),
            "pg_ctl promote failed"
        );
    }

    /// The directory, user and password of a server not yet created.
    fn prepare(password: String) -> TestPostgres {
        let bin = find_binaries();
        let dir = tempfile::Builder::new()
            .prefix("strom-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let is_root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let run_as = is_root.then(|| {
            if id_of("postgres", "-u").is_some() {
                "postgres".to_string()
            } else {
                "nobody".to_string()
            }
        });
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).unwrap_or_else(|e| panic!("{e}"));
        if let Some(user) = &run_as {
            let (Some(uid), Some(gid)) = (id_of(user, "-u"), id_of(user, "-g")) else {
                panic!("no uid for user {user}");
            };
            chown_all(dir.path(), uid, gid);
            chown_all(&pwfile, uid, gid);
        }
        let pg = TestPostgres {
            port: 0,
            dir,
            bin,
            password,
            run_as,
            running: Mutex::new(false),
        };
        pg.watch_for_a_killed_test();
        pg
    }

    fn start_on_a_free_port(mut self) -> TestPostgres {
        for attempt in 0..5 {
            self.port = free_port();
            if self.try_start() {
                return self;
            }
            eprintln!(
                "test PostgreSQL did not start on port {} (try {attempt})",
                self.port
            );
        }
        panic!(
            "test PostgreSQL did not start; its log: {}",
            std::fs::read_to_string(self.log_file()).unwrap_or_default()
        );
    }

    /// The server shared by the tests of this process that do not stop it; it stops when
    /// the last of them drops it.
    pub fn shared() -> Arc<TestPostgres> {
        let mut g = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pg) = g.upgrade() {
            return pg;
        }
        let pg = Arc::new(TestPostgres::start());
        *g = Arc::downgrade(&pg);
        pg
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn run(&self, tool: &str, args: &[&str]) -> bool {
        self.run_with_env(tool, args, &[])
    }

    fn run_with_env(&self, tool: &str, args: &[&str], env: &[(&str, &str)]) -> bool {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        if !out.status.success() && (tool == "initdb" || tool == "pg_basebackup") {
            panic!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }

    fn try_start(&self) -> bool {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            path_str(self.dir.path())
        );
        let data = self.data_dir();
        let log = self.log_file();
        let ok = self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        );
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = ok;
        ok
    }

    /// A test process killed outright (a timeout, SIGKILL) runs no `Drop`: a detached shell
    /// stops the server and removes its directory once this process is gone.
    fn watch_for_a_killed_test(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match &self.run_as {
            Some(user) => format!("runuser -u {user} -- '{}'", pg_ctl.display()),
            None => format!("'{}'", pg_ctl.display()),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} -D '{data}' -m immediate stop; rm -rf '{dir}'",
            pid = std::process::id(),
            data = self.data_dir().display(),
            dir = self.dir.path().display(),
        );
        let spawned = Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            eprintln!("no watchdog for the test PostgreSQL: {e}");
        }
    }

    /// Starts the server again after [`TestPostgres::stop`], on the same port.
    pub fn restart(&self) {
        assert!(self.try_start(), "test PostgreSQL did not start again");
    }

    /// Stops the server (fast shutdown: connections are closed).
    pub fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if *running {
            let data = self.data_dir();
            self.run(
                "pg_ctl",
                &["-D", path_str(&data), "-m", "fast", "-w", "stop"],
            );
            *running = false;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// `cluster.metadata.url` for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{TEST_USER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// A client of the `postgres` database, for what a test does behind the store's back.
    pub fn admin(&self) -> Client {
        Client::connect(&self.url("postgres"), NoTls)
            .unwrap_or_else(|e| panic!("test PostgreSQL admin connection: {e}"))
    }

    pub fn client(&self, db: &str) -> Client {
        Client::connect(&self.url(db), NoTls)
            .unwrap_or_else(|e| panic!("test PostgreSQL connection to {db}: {e}"))
    }

    /// A new empty database; returns its name.
    pub fn create_database(&self) -> String {
        let name = format!(
            "strom_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        name
    }

    /// Ends every other session on `db` and waits until they are gone: what a connection
    /// loss looks like to the store.
    pub fn terminate_connections(&self, db: &str) -> u64 {
        let rows = self
            .admin()
            .query(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
                  WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db],
            )
            .unwrap_or_else(|e| panic!("pg_terminate_backend: {e}"));
        rows.len() as u64
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let running = *self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running {
            let data = self.data_dir();
            self.run(
                "pg_ctl",
                &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
            );
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_fail_with_one_line_naming_the_package() {
        let empty = tempfile::tempdir().unwrap();
        let got = find_binaries_in(
            Some(empty.path().join("nope")),
            empty.path(),
            Some(empty.path().as_os_str().to_owned()),
        );
        let message = got.unwrap_err();
        assert!(message.contains("`postgresql` package") && !message.contains('\n'));

        // The newest version under the library root wins.
        for v in ["13", "15", "9"] {
            let bin = empty.path().join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("initdb"), "").unwrap();
            std::fs::write(bin.join("pg_ctl"), "").unwrap();
        }
        assert_eq!(
            find_binaries_in(None, empty.path(), None).unwrap(),
            empty.path().join("15").join("bin")
        );
    }
}
