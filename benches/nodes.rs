//! Several nodes on one PostgreSQL: `cargo bench --bench nodes [-- ENTRIES]` (default
//! 10000000). Needs the server of `scripts/postgres-test-server.sh`.
//!
//! 1. Index load: how long a node takes to load ENTRIES opt-outs into its consent index
//!    at start, from PostgreSQL and, for comparison, from SQLite.
//! 2. Propagation: two real daemons (release binary) on one database. An opt-out through
//!    node A's one-click endpoint; the time from A's 200 until node B's milter refuses
//!    the address at RCPT (B is asked again and again, each time a new milter session).
//!    SAMPLES opt-outs one after the other; p50 and p99.

mod support;

use indymilter_test::{Status, TestConnection};
use optout_milter::{
    config::{Config, Overrides},
    consent::AddressPolicy,
    store::{self, index::IndexedStore},
    unsubscribe::Unsubscribe,
};
use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

const SAMPLES: usize = 1000;

fn main() {
    let entries: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(index_load(entries));
    runtime.block_on(propagation());
}

async fn index_load(entries: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    println!("| store | entries | index load |");
    println!("|---|---|---|");
    for url in [
        support::postgres_database("index").await,
        format!("sqlite:{}", dir.path().join("consent.db").display()),
    ] {
        support::fill(&url, entries).await;
        let started = Instant::now();
        let index = IndexedStore::wrap(store::open(&url).await.expect("open"))
            .await
            .expect("index");
        while !index.is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let kind = url.split(':').next().unwrap_or_default();
        println!("| {kind} | {entries} | {:.1?} |", started.elapsed());
    }
}

/// A daemon with a web front on `db`, its files in `dir` and the token key `key`.
fn node(dir: &Path, db: &str, key: &Path, milter: u16, web: u16) -> Child {
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nsocket = \"inet:127.0.0.1:{milter}\"\n[store]\nurl = \"{db}\"\n\
             [[classify.senders]]\nsender = \"news@example.com\"\nlist = \"weekly\"\n\
             [unsubscribe]\nhttps_base = \"https://u.example.com\"\nmailto = \"u@example.com\"\n\
             generate_missing_key = true\n[[unsubscribe.keys]]\nid = 1\nfile = \"{}\"\n\
             [web]\nlisten = \"127.0.0.1:{web}\"\nrate_limit = 0\n",
            key.display()
        ),
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
        .arg("--config")
        .arg(&config)
        .args(["serve", "--init"])
        .env("OPTOUT_MILTER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node.log")).expect("log"))
        .spawn()
        .expect("start optout-milter");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", web)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", milter)).is_err()
    {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

async fn refused(port: u16, rcpt: &str) -> bool {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut conn = TestConnection::open(addr).await.expect("open");
    let client: std::net::SocketAddr = "192.0.2.1:1234".parse().expect("addr");
    conn.connect("client.example", client)
        .await
        .expect("connect");
    conn.mail(["<news@example.com>"]).await.expect("mail");
    let status = conn.rcpt([format!("<{rcpt}>")]).await.expect("rcpt");
    conn.close().await.expect("close");
    status != Status::Continue
}

fn post(port: u16, token: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = "List-Unsubscribe=One-Click";
    write!(
        stream,
        "POST /u/{token} HTTP/1.1\r\nHost: u.example.com\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn propagation() {
    let db = support::postgres_database("propagation").await;
    drop(store::open_or_create(&db).await.expect("create"));
    let (a_dir, b_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let key = a_dir.path().join("token.key");
    let (a_milter, a_web, b_milter, b_web) = (free_port(), free_port(), free_port(), free_port());
    let mut a = node(a_dir.path(), &db, &key, a_milter, a_web);
    let mut b = node(b_dir.path(), &db, &key, b_milter, b_web);

    let config =
        Config::load(&a_dir.path().join("node.toml"), &Overrides::default()).expect("config");
    let unsubscribe = Unsubscribe::load(config.unsubscribe.clone().expect("keys")).expect("keys");
    let shared = store::open(&db).await.expect("open");
    let mut delays = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let address = AddressPolicy::default()
            .normalize(&format!("p{i}@bench.example"))
            .expect("address");
        let subject = shared
            .subject_id(&address, &"weekly".parse().expect("list"))
            .await
            .expect("subject");
        let token = unsubscribe
            .codec
            .mint(subject, SystemTime::now())
            .expect("mint");
        assert_eq!(post(a_web, &token), 200);
        let acknowledged = Instant::now();
        while !refused(b_milter, address.as_str()).await {
            assert!(
                acknowledged.elapsed() < Duration::from_secs(10),
                "never propagated"
            );
        }
        delays.push(acknowledged.elapsed());
    }
    delays.sort();
    let at = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    println!();
    println!("| propagation, node A's 200 to node B's refusal | p50 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {SAMPLES} opt-outs, one at a time | {:.2?} | {:.2?} | {:.2?} |",
        at(0.5),
        at(0.99),
        delays[delays.len() - 1]
    );
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
}
