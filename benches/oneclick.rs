//! Durable one-click opt-outs per second: `cargo bench --bench oneclick` (on SQLite;
//! `BENCH_STORE=postgres` on PostgreSQL).
//!
//! Fills a fresh SQLite store with token subjects, starts the web front in-process, and
//! drives it with `wrk` (Debian package `wrk`), every request a new opt-out. The figure is
//! counted from the store afterwards, not from wrk: only rows that are on disk count.

mod support;

use optout_milter::{
    config::{Config, Overrides},
    daemon::{self, App, Listeners},
    store,
    unsubscribe::Unsubscribe,
};
use std::{
    io::Write,
    path::Path,
    process::Command,
    sync::Arc,
    time::{Instant, SystemTime},
};

const SUBJECTS: u64 = 300_000;
const SECONDS: u32 = 10;

fn main() {
    let connections: u32 = std::env::var("CONNECTIONS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(connections));
}

async fn run(connections: u32) {
    let dir = tempfile::tempdir().expect("temp dir");
    // BENCH_STORE=postgres: on a fresh PostgreSQL database instead of SQLite.
    let postgres = std::env::var("BENCH_STORE").is_ok_and(|s| s == "postgres");
    let db = match postgres {
        true => support::postgres_database("oneclick").await,
        false => format!("sqlite:{}", dir.path().join("consent.db").display()),
    };
    let config = format!(
        "[unsubscribe]\nhttps_base = \"https://u.example.com\"\nmailto = \"u@example.com\"\n\
         generate_missing_key = true\n[[unsubscribe.keys]]\nid = 1\nfile = \"{}/key\"\n\
         [web]\nlisten = \"127.0.0.1:0\"\nrate_limit = 0\n",
        dir.path().display()
    );
    let overrides = Overrides {
        store_url: Some(db.clone()),
        socket: Some("inet:127.0.0.1:0".to_owned()),
    };
    let config = Config::parse(Path::new("bench.toml"), &config, &overrides).expect("config");
    let store = store::open_or_create(&db).await.expect("store");
    let unsubscribe = Arc::new(
        Unsubscribe::load(config.unsubscribe.clone().expect("unsubscribe")).expect("keys"),
    );

    // Token subjects for SUBJECTS addresses, written in one transaction.
    let fill = Instant::now();
    if postgres {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db)
            .await
            .expect("fill connection");
        sqlx::query(
            "INSERT INTO token_subject (id, address, scope, created_at)
             SELECT i, 'reader' || i || '@bench.example', '*', 0 FROM generate_series(1, $1) AS i",
        )
        .bind(SUBJECTS as i64)
        .execute(&mut conn)
        .await
        .expect("insert subjects");
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db)
            .await
            .expect("fill connection");
        let mut tx = conn.begin().await.expect("begin");
        for i in 1..=SUBJECTS {
            sqlx::query(
                "INSERT INTO token_subject (id, address, scope, created_at) VALUES (?, ?, '*', 0)",
            )
            .bind(i as i64)
            .bind(format!("reader{i}@bench.example"))
            .execute(&mut *tx)
            .await
            .expect("insert subject");
        }
        tx.commit().await.expect("commit");
    }
    let tokens_path = dir.path().join("tokens.txt");
    let mut tokens =
        std::io::BufWriter::new(std::fs::File::create(&tokens_path).expect("tokens file"));
    let now = SystemTime::now();
    for i in 1..=SUBJECTS {
        writeln!(tokens, "{}", unsubscribe.codec.mint(i, now).expect("mint")).expect("write token");
    }
    tokens.flush().expect("flush");
    drop(tokens);
    eprintln!("filled {SUBJECTS} token subjects in {:.1?}", fill.elapsed());

    // The daemon as `serve` runs it, built once the subjects are in.
    let app = App::build(config, overrides, store.clone())
        .await
        .expect("assemble");
    let listeners = Listeners::bind(app.config()).await.expect("bind");
    let port = listeners.web_addr().expect("web front").port();
    let (_reload, reloads) = tokio::sync::mpsc::channel(1);
    let server = tokio::spawn(daemon::run(app, listeners, reloads, std::future::pending()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wrk/oneclick.lua");
    let wrk = tokio::task::spawn_blocking(move || {
        Command::new("wrk")
            .args([
                "-t",
                "2",
                "-c",
                &connections.to_string(),
                "-d",
                &format!("{SECONDS}s"),
                "--latency",
                "-s",
            ])
            .arg(&script)
            .arg(format!("http://127.0.0.1:{port}"))
            .env("TOKENS", &tokens_path)
            .output()
    })
    .await
    .expect("join")
    .expect("run wrk (apt-get install wrk)");
    let report = String::from_utf8_lossy(&wrk.stdout);
    server.abort();

    let durable: i64 = {
        let count = "SELECT count(*) FROM consent WHERE value = 'n'";
        use sqlx::Connection;
        match postgres {
            true => sqlx::query_scalar(count)
                .fetch_one(&mut sqlx::PgConnection::connect(&db).await.expect("connect"))
                .await
                .expect("count"),
            false => sqlx::query_scalar(count)
                .fetch_one(&mut sqlx::SqliteConnection::connect(&db).await.expect("connect"))
                .await
                .expect("count"),
        }
    };
    let non_2xx = report
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .unwrap_or("Non-2xx or 3xx responses: 0");
    let latency = |p: &str| {
        report
            .lines()
            .find(|l| l.trim_start().starts_with(p))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "wrk -t 2 -c {connections} -d {SECONDS}s, one new token per request, {}",
        match postgres {
            true => "PostgreSQL synchronous_commit=on",
            false => "SQLite synchronous=FULL",
        }
    );
    println!(
        "durable one-click opt-outs: {durable} in {SECONDS} s = {:.0}/s",
        durable as f64 / f64::from(SECONDS)
    );
    println!(
        "latency p50 {} p99 {}; {}",
        latency("50%"),
        latency("99%"),
        non_2xx.trim()
    );
}
