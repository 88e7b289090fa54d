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
