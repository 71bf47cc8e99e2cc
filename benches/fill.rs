//! Fills a store with synthetic opt-outs for the benchmarks:
//! `cargo bench --bench fill -- sqlite:/path/consent.db 1000000`.
//!
//! Addresses are `r{i}@bench.example` for i in 0..N, each with `n` for all marketing (`*`),
//! written in large transactions straight into the schema (no history rows: this is
//! benchmark data, not a record of anyone's choice).

use std::time::Instant;

const BATCH: u64 = 50_000;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let url = args.next().expect("usage: fill STORE_URL COUNT");
    let count: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: fill STORE_URL COUNT");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(fill(&url, count));
}

async fn fill(url: &str, count: u64) {
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
