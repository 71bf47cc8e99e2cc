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
