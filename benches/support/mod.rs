//! Helpers shared by the benchmarks.
#![allow(dead_code)]

use std::time::Instant;

const BATCH: u64 = 50_000;

/// Writes `count` synthetic opt-outs, `r{i}@bench.example` with `n` at `*`, into the
/// store at `url` (created and migrated if needed), in large transactions and without
/// history rows: this is benchmark data, not a record of anyone's choice.
pub async fn fill(url: &str, count: u64) {
    use sqlx::Connection;
    // Opening through the store creates and migrates the database.
    drop(optout_milter::store::open(url).await.expect("open store"));
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    sqlx::query("PRAGMA synchronous = OFF")
        .execute(&mut conn)
        .await
        .expect("pragma");
    let start = Instant::now();
    let mut i = 0;
    while i < count {
        let mut tx = conn.begin().await.expect("begin");
        for j in i..(i + BATCH).min(count) {
            sqlx::query(
                "INSERT OR IGNORE INTO consent (address, channel, scope, value, source, updated_at, evidence)
                 VALUES (?, 'email', '*', 'n', 'import', 0, 'benchmark')",
            )
            .bind(format!("r{j}@bench.example"))
            .execute(&mut *tx)
            .await
            .expect("insert");
        }
        tx.commit().await.expect("commit");
        i += BATCH;
    }
    eprintln!("filled {count} opt-outs in {:.1?}", start.elapsed());
}
