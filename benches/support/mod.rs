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
