//! A fresh PostgreSQL database per test, on the server named by `OPTOUT_TEST_POSTGRES`
//! (default `postgres://optout_test:optout_test@127.0.0.1:5432/postgres`, a role with
//! CREATEDB; `.ci/run` creates it). Without a server the tests say they were skipped;
//! under CI they fail.

use sqlx::{Connection, PgConnection};

const DEFAULT: &str = "postgres://optout_test:optout_test@127.0.0.1:5432/postgres";

/// A database that is dropped when the test ends.
pub struct TestDb {
    pub url: String,
    admin: String,
    name: String,
}

fn admin_url() -> String {
    std::env::var("OPTOUT_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT.to_owned())
}

/// A new, empty database for `test`, or `None` (with a message) when no server answers
/// outside CI.
pub async fn database(test: &str) -> Option<TestDb> {
    let admin = admin_url();
    let conn = match PgConnection::connect(&admin).await {
        Ok(conn) => conn,
        Err(error) => {
            let why = format!("no PostgreSQL at {admin}: {error}");
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {why} (required under CI=true)");
            }
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
    };
    drop(conn);
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(|| drop_stale(&admin));
    let name = format!("optout_{}_{}", std::process::id(), rand_suffix(test));
    one_at_a_time(&admin, format!("CREATE DATABASE {name}")).expect("create the test database");
    let url = match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("OPTOUT_TEST_POSTGRES has no database part: {admin}"),
    };
    Some(TestDb { url, admin, name })
}

fn rand_suffix(test: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(test.as_bytes());
    format!("{:x}", h.finish() & 0xffff_ffff)
}

impl TestDb {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL with another role.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        let rest = self.url.split_once('@').map_or("", |(_, rest)| rest);
        format!("postgres://{user}:{password}@{rest}")
    }

    /// Runs `sql` (several statements) as the test's role, in this database.
    pub async fn execute_script(&self, sql: &str) {
        let mut conn = self.connect().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    /// A plain connection, to act as another writer or to break things.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect")
    }
}

/// One `CREATE DATABASE` or `DROP DATABASE` at a time: two at once wait for each other's
/// ProcSignalBarrier on PostgreSQL 15 (both sessions show that wait) for about a minute.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `sql` on the server at `admin` under [`ONE_AT_A_TIME`], on a thread with its own
/// runtime (callers are inside a test's runtime, or in `Drop`).
fn one_at_a_time(admin: &str, sql: String) -> Result<(), String> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let admin = admin.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let mut conn = PgConnection::connect(&admin)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the thread panicked".into()))
}

/// A test's database outlives its test: it is dropped by the next test process, before
/// its first test ([`drop_stale`]). A `DROP DATABASE` takes a transaction id and can wait
/// a minute for every backend of the cluster to absorb its ProcSignalBarrier; while it
/// waits, the change feed of every other test's database stands still (it hands out only
/// what is older than the oldest transaction running), and feed tests running beside it
/// time out.
impl Drop for TestDb {
    fn drop(&mut self) {}
}

/// Drops the test databases of processes that have ended.
fn drop_stale(admin: &str) {
    let names = {
        let admin = admin.to_owned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                sqlx::query_scalar::<_, String>(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'optout\\_%'",
                )
                .fetch_all(&mut conn)
                .await
                .ok()
            })
        })
        .join()
        .ok()
        .flatten()
        .unwrap_or_default()
    };
    for name in names {
        let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if pid.is_some() && !alive {
            let _ = one_at_a_time(
                admin,
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// Whether the fixtures put their store on PostgreSQL: with `OPTOUT_TEST_STORE=postgres`,
/// the suites that take their store from [`fixture_store`] (milter, web, LMTP, intake,
/// journey) run each test on a fresh PostgreSQL database; `.ci/run` runs them so after
/// the whole suite has run on SQLite.
pub fn fixtures_on_postgres() -> bool {
    std::env::var("OPTOUT_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// The store URL for a fixture: `sqlite_url`, or under [`fixtures_on_postgres`] a new
/// database, kept as long as the returned [`TestDb`].
pub async fn fixture_store(sqlite_url: String) -> (String, Option<TestDb>) {
    if !fixtures_on_postgres() {
        return (sqlite_url, None);
    }
    let db = database("fixture")
        .await
        .expect("OPTOUT_TEST_STORE=postgres, but no PostgreSQL answers");
    (db.url.clone(), Some(db))
}

/// [`fixture_store`] for tests without a runtime.
pub fn fixture_store_blocking(sqlite_url: String) -> (String, Option<TestDb>) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(fixture_store(sqlite_url))
    })
    .join()
    .expect("create the fixture's database")
}

/// A TCP relay to a test database's server that can fall silent: once [`cut`], it
/// forwards nothing more and closes nothing, as a network partition does, so a query sent
/// through it waits (for many minutes, in real life) instead of failing.
///
/// [`cut`]: Relay::cut
pub struct Relay {
    url: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    /// Relays to the server of `url` (a `postgres://USER:PASSWORD@HOST:PORT/DATABASE`).
    pub async fn start(url: &str) -> Relay {
        use std::sync::{Arc, atomic::AtomicBool};
        let (before, after) = url.split_once('@').expect("a URL with a user");
        let (server, database) = after.split_once('/').expect("a URL with a database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let port = listener.local_addr().expect("the relay's port").port();
        let cut = Arc::new(AtomicBool::new(false));
        let (server, flag) = (server.to_owned(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(&server).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (upstream_read, upstream_write) = upstream.into_split();
                tokio::spawn(pump(client_read, upstream_write, flag.clone()));
                tokio::spawn(pump(upstream_read, client_write, flag.clone()));
            }
        });
        Relay {
            url: format!("{before}@127.0.0.1:{port}/{database}"),
            cut,
        }
    }

    /// The database's URL through the relay.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// From now on nothing passes, and every connection stays open.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(std::sync::atomic::Ordering::SeqCst) {
            // Silent: hold both sockets open, forward nothing, until the test ends.
            let _held = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
