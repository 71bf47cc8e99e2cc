//! Helpers shared by the benchmarks.
#![allow(dead_code)]

use std::time::Instant;

/// Rows per transaction while filling.
const BATCH: u64 = 1_000_000;

/// Writes `count` synthetic opt-outs, `r{i}@bench.example` with `n` at `*`, into the
/// store at `url` (created and migrated if needed), in large transactions and without
/// history rows: this is benchmark data, not a record of anyone's choice.
///
/// The rows are generated inside SQLite by a recursive query, one statement per million
/// rows: a round trip through sqlx per row made 10 M rows take longer than ten minutes.
pub async fn fill(url: &str, count: u64) {
    use sqlx::Connection;
    // Opening through the store creates and migrates the database.
    drop(
        optout_milter::store::open_or_create(url)
            .await
            .expect("open store"),
    );
    if url.starts_with("postgres") {
        return fill_postgres(url, count).await;
    }
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    for pragma in ["PRAGMA synchronous = OFF", "PRAGMA cache_size = -1000000"] {
        sqlx::query(pragma)
            .execute(&mut conn)
            .await
            .expect("pragma");
    }
    let start = Instant::now();
    let mut from = 0;
    while from < count {
        let to = (from + BATCH).min(count);
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2)
             INSERT OR IGNORE INTO consent (address, channel, scope, value, source, updated_at, evidence)
             SELECT 'r' || i || '@bench.example', 'email', '*', 'n', 'import', 0, 'benchmark' FROM n",
        )
        .bind(i64::try_from(from).expect("count fits i64"))
        .bind(i64::try_from(to).expect("count fits i64"))
        .execute(&mut conn)
        .await
        .expect("insert");
        from = to;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .expect("checkpoint");
    eprintln!("filled {count} opt-outs in {:.1?}", start.elapsed());
}

/// [`fill`] on PostgreSQL: the rows come from `generate_series`, a million per statement.
async fn fill_postgres(url: &str, count: u64) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await
        .expect("set");
    let start = Instant::now();
    let mut from = 0;
    while from < count {
        let to = (from + BATCH).min(count);
        sqlx::query(
            "INSERT INTO consent (address, channel, scope, value, source, updated_at, evidence)
             SELECT 'r' || i || '@bench.example', 'email', '*', 'n', 'import', 0, 'benchmark'
             FROM generate_series($1::bigint, $2::bigint - 1) AS i
             ON CONFLICT DO NOTHING",
        )
        .bind(i64::try_from(from).expect("count fits i64"))
        .bind(i64::try_from(to).expect("count fits i64"))
        .execute(&mut conn)
        .await
        .expect("insert");
        from = to;
    }
    sqlx::query("VACUUM ANALYZE consent")
        .execute(&mut conn)
        .await
        .expect("vacuum");
    eprintln!("filled {count} opt-outs in {:.1?}", start.elapsed());
}

/// A new, empty PostgreSQL database for a benchmark, on the server of
/// `OPTOUT_TEST_POSTGRES` (as for the tests, see `scripts/postgres-test-server.sh`).
pub async fn postgres_database(name: &str) -> String {
    use sqlx::Connection;
    let admin = std::env::var("OPTOUT_TEST_POSTGRES").unwrap_or_else(|_| {
        "postgres://optout_test:optout_test@127.0.0.1:5432/postgres".to_owned()
    });
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("a PostgreSQL server (scripts/postgres-test-server.sh)");
    // A fixed name: the next run of the same benchmark drops it.
    let database = format!("bench_{name}");
    for sql in [
        format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        format!("CREATE DATABASE {database}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("create the benchmark database");
    }
    let (server, _) = admin.rsplit_once('/').expect("a database in the URL");
    format!("{server}/{database}")
}
