//! Unsubscribe mails per second: `cargo bench --bench intake`.
//!
//! Three ways in: `optout-milter ingest` (one process per mail, as Postfix's pipe transport
//! runs it; 4 at a time, the `maxproc` of deploy/postfix/master.cf), the milter path (16
//! concurrent MTA connections, each mail to a new `unsubscribe+TOKEN` address), and LMTP
//! to the daemon (16 connections kept open, as Postfix's lmtp client caches them; each
//! mail's commands pipelined). Every mail carries a valid token for a different address,
//! so every one is a new durable opt-out; the count comes from the store afterwards.

mod support;

use indymilter_test::{Status, TestConnection};
use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Instant, SystemTime},
};

const INGEST_MAILS: u64 = 800;
const INGEST_PARALLEL: u64 = 4;
const MILTER_MAILS: u64 = 20_000;
const LMTP_MAILS: u64 = 20_000;
const CLIENTS: u64 = 16;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite:{}", dir.path().join("consent.db").display());
    let socket = dir.path().join("milter.sock");
    let lmtp = dir.path().join("lmtp.sock");
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nsocket = \"unix:{}\"\n[store]\nurl = \"{db}\"\n\
             [unsubscribe]\nhttps_base = \"https://u.example.com\"\nmailto = \"unsubscribe@example.com\"\n\
             generate_missing_key = true\n[[unsubscribe.keys]]\nid = 1\nfile = \"{}/key\"\n\
             [intake]\nlmtp = \"unix:{}\"\n",
            socket.display(),
            dir.path().display(),
            lmtp.display()
        ),
    )
    .expect("config");
    let bin = env!("CARGO_BIN_EXE_optout-milter");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let tokens = runtime.block_on(mint(&config, &db, INGEST_MAILS + MILTER_MAILS + LMTP_MAILS));

    // ingest, INGEST_PARALLEL processes at a time.
    let start = Instant::now();
    std::thread::scope(|threads| {
        for first in 0..INGEST_PARALLEL {
            let (tokens, config) = (&tokens, &config);
            threads.spawn(move || {
                for i in (first..INGEST_MAILS).step_by(INGEST_PARALLEL as usize) {
                    ingest(bin, config, &tokens[i as usize]);
                }
            });
        }
    });
    let ingest_rate = INGEST_MAILS as f64 / start.elapsed().as_secs_f64();

    // The milter path.
    let mut daemon = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("OPTOUT_MILTER_LOG", "warn")
        .spawn()
        .expect("serve");
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let milter_tokens =
        Arc::new(tokens[INGEST_MAILS as usize..(INGEST_MAILS + MILTER_MAILS) as usize].to_vec());
    let start = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (tokens, socket) = (milter_tokens.clone(), socket.clone());
                tokio::spawn(async move {
                    for i in (c..MILTER_MAILS).step_by(CLIENTS as usize) {
                        mail(&socket, &tokens[i as usize]).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("client");
        }
    });
    let milter_rate = MILTER_MAILS as f64 / start.elapsed().as_secs_f64();

    // LMTP.
    let lmtp_tokens = Arc::new(tokens[(INGEST_MAILS + MILTER_MAILS) as usize..].to_vec());
    let start = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (tokens, lmtp) = (lmtp_tokens.clone(), lmtp.clone());
                tokio::spawn(async move {
                    let mut conn = Lmtp::connect(&lmtp).await;
                    for i in (c..LMTP_MAILS).step_by(CLIENTS as usize) {
                        conn.deliver(&tokens[i as usize]).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("client");
        }
    });
    let lmtp_rate = LMTP_MAILS as f64 / start.elapsed().as_secs_f64();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let durable = runtime.block_on(count(&db));
    assert_eq!(
        durable,
        INGEST_MAILS + MILTER_MAILS + LMTP_MAILS,
        "every mail must be a durable opt-out"
    );
    println!("| path | mails | unsubscribe mails/s |");
    println!("|---|---|---|");
    println!(
        "| ingest (pipe transport), {INGEST_PARALLEL} processes at a time | {INGEST_MAILS} | {ingest_rate:.0} |"
    );
    println!("| milter, {CLIENTS} connections | {MILTER_MAILS} | {milter_rate:.0} |");
    println!("| LMTP, {CLIENTS} connections kept open | {LMTP_MAILS} | {lmtp_rate:.0} |");
    println!("durable opt-outs in the store afterwards: {durable}");
}

/// One `ingest` run with one unsubscribe mail on its standard input.
fn ingest(bin: &str, config: &Path, token: &str) {
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args([
            "ingest",
            "--sender",
            "reader@example.org",
            "--recipient",
            &format!("unsubscribe+{token}@example.com"),
        ])
        .env("OPTOUT_MILTER_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("ingest");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"From: r@example.org\r\nSubject: unsubscribe\r\n\r\n")
        .expect("write");
    assert!(child.wait().expect("wait").success());
}

/// An LMTP client connection, as an MTA keeps one open.
struct Lmtp(tokio::io::BufReader<tokio::net::UnixStream>);

impl Lmtp {
    async fn connect(path: &Path) -> Self {
        let mut conn = Self(tokio::io::BufReader::new(
            tokio::net::UnixStream::connect(path)
                .await
                .expect("connect"),
        ));
        conn.expect("220").await;
        conn.send("LHLO mx.example.com\r\n").await;
        conn.expect("250 ").await;
        conn
    }

    async fn send(&mut self, text: &str) {
        use tokio::io::AsyncWriteExt;
        self.0
            .get_mut()
            .write_all(text.as_bytes())
            .await
            .expect("write");
    }

    /// Reads lines until one starts with `code`; any other final reply is a failure.
    async fn expect(&mut self, code: &str) {
        use tokio::io::AsyncBufReadExt;
        loop {
            let mut line = String::new();
            self.0.read_line(&mut line).await.expect("read");
            if line.starts_with(code) {
                return;
            }
            assert_eq!(
                line.as_bytes().get(3),
                Some(&b'-'),
                "unexpected reply {line:?}"
            );
        }
    }

    async fn deliver(&mut self, token: &str) {
        self.send(&format!(
            "MAIL FROM:<someone@example.org>\r\nRCPT TO:<unsubscribe+{token}@example.com>\r\nDATA\r\n"
        ))
        .await;
        self.expect("250 ").await;
        self.expect("250 ").await;
        self.expect("354 ").await;
        self.send(
            "From: someone@example.org\r\nSubject: unsubscribe\r\n\r\nPlease unsubscribe me.\r\n.\r\n",
        )
        .await;
        self.expect("250 2.0.0 ").await;
    }
}

async fn mail(socket: &Path, token: &str) {
    let mut conn = TestConnection::configure()
        .open_unix(socket)
        .await
        .expect("open");
    let client: std::net::SocketAddr = "198.51.100.5:40000".parse().expect("addr");
    conn.connect("mail.example.org", client)
        .await
        .expect("connect");
    conn.mail(["<someone@example.org>"]).await.expect("mail");
    conn.rcpt([format!("<unsubscribe+{token}@example.com>")])
        .await
        .expect("rcpt");
    conn.header("From", "someone@example.org")
        .await
        .expect("header");
    conn.header("Subject", "unsubscribe").await.expect("header");
    conn.body("Please unsubscribe me.\r\n").await.expect("body");
    let (_, status) = conn.eom().await.expect("eom");
    assert_eq!(status, Status::Discard);
    conn.close().await.expect("close");
}

/// Tokens for `n` different addresses.
async fn mint(config: &Path, db: &str, n: u64) -> Vec<String> {
    use optout_milter::{
        config::{Config, Overrides},
        unsubscribe::Unsubscribe,
    };
    drop(
        optout_milter::store::open_or_create(db)
            .await
            .expect("store"),
    );
    let config = Config::load(config, &Overrides::default()).expect("config");
    let unsubscribe = Unsubscribe::load(config.unsubscribe.expect("unsubscribe")).expect("keys");
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(db).await.expect("connect");
    let mut tx = conn.begin().await.expect("begin");
    for i in 1..=n {
        sqlx::query(
            "INSERT INTO token_subject (id, address, scope, created_at) VALUES (?, ?, '*', 0)",
        )
        .bind(i as i64)
        .bind(format!("u{i}@bench.example"))
        .execute(&mut *tx)
        .await
        .expect("subject");
    }
    tx.commit().await.expect("commit");
    let now = SystemTime::now();
    (1..=n)
        .map(|i| unsubscribe.codec.mint(i, now).expect("mint"))
        .collect()
}

async fn count(db: &str) -> u64 {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(db).await.expect("connect");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM consent WHERE value = 'n'")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    n as u64
}
