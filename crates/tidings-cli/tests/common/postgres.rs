//! Databases for hubs on PostgreSQL: a new one per test, on the server `scripts/test` starts
//! (or `TIDINGS_TEST_POSTGRES_URL`), dropped when the test ends.

use sqlx::Connection as _;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The server tests use.
pub fn server() -> String {
    std::env::var("TIDINGS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of this test's; dropped with it.
pub struct Database {
    pub url: String,
    name: String,
}

fn block_on<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    // Its own thread and runtime: callable from a test's runtime and from `Drop`.
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(work)
    })
    .join()
    .unwrap()
}

async fn admin() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&server())
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL at {} ({e}): run scripts/test, which starts one", server()))
}

impl Database {
    /// A new, empty database.
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("tidings_cli_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let create = name.clone();
        block_on(async move {
            let mut admin = admin().await;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {create} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
            sqlx::query(&format!("CREATE DATABASE {create}")).execute(&mut admin).await.unwrap();
        });
        let server = server();
        let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
        Self { url: format!("{base}/{name}"), name }
    }
}

impl Database {
    /// Runs a statement in it.
    pub fn execute(&self, sql: &str) {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        block_on(async move {
            let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(&sql).execute(&mut connection).await.unwrap();
        });
    }

    /// The one text a query answers.
    pub fn query_text(&self, sql: &str) -> String {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        block_on(async move {
            let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, String>(&sql).fetch_one(&mut connection).await.unwrap()
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on(async move {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin().await)
                .await;
        });
    }
}

/// A PostgreSQL server of one test's own (in a temporary folder, on a free port), for tests
/// that stop and start it: the shared one serves the other tests meanwhile.
pub struct PrivateServer {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    pub port: u16,
}

impl PrivateServer {
    fn as_postgres(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        // PostgreSQL refuses to run as root: its own user runs it then.
        let root =
            std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
        if root {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            std::process::Command::new(path)
        }
    }

    /// Initializes and starts a server (trust authentication, user postgres).
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's programs (scripts/test installs Debian's postgresql)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .unwrap();
        let dir =
            std::env::temp_dir().join(format!("tidings-pg-{}-{}", std::process::id(), super::free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::process::Command::new("chown").arg("postgres").arg(&dir).status();
        let server = Self { dir, bin, port: super::free_port() };
        let out = server
            .as_postgres("initdb")
            .arg("-D")
            .arg(server.dir.join("data"))
            .args(["-A", "trust", "-U", "postgres"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        server.run();
        server
    }

    /// Starts it (again).
    pub fn run(&self) {
        let options = format!("-c listen_addresses=127.0.0.1 -p {} -k {}", self.port, self.dir.display());
        let out = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-o", &options, "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops it at once, as a crash would (connections dropped, no clean shutdown).
    pub fn stop(&self) {
        let out = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
