//! The milter alone: `cargo bench --bench milter [-- ENTRIES...]` (default 0 1000000
//! 10000000); with `BENCH_STORE=postgres`, on PostgreSQL (see benches/nodes.rs).
//!
//! For each store size, fills a fresh store, starts the release binary (`serve`) on it,
//! and drives it with clients that each repeat one MTA session: open, negotiate, connect,
//! MAIL, RCPT x2, headers, end of message (with header injection) over the Unix socket.
//! About 5 % of the recipients have opted out, so about one message in ten keeps a single
//! recipient and gets a per-recipient token, whose subject id is a durable write the first
//! time. Three loads: 16 and 64 clients flat out (throughput; their latency is mostly
//! queueing), and a paced 2 000 transactions/s (latency below saturation). Reports
//! transactions per second, p50/p99 latency per transaction, the daemon's CPU time per
//! transaction (user + system, from /proc: steadier than the rate, which the clients on
//! the same two cores disturb), and its peak RSS (VmHWM).

mod support;

use indymilter_test::TestConnection;
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

const SECONDS: u64 = 10;
/// The offered rate of the paced run, transactions per second: about what a busy MTA
/// sends, and twice what Postfix manages on this machine.
const OPEN_RATE: u64 = 2000;
/// Connections of the paced run.
const OPEN_CLIENTS: u64 = 16;

/// How the clients drive the milter.
#[derive(Clone, Copy)]
enum Load {
    /// N clients, each starting its next transaction as soon as the last one ends: the
    /// most the milter can do. Latency here is mostly queueing (N / rate).
    Closed(usize),
    /// A fixed total rate spread over [`OPEN_CLIENTS`] clients, a transaction that starts
    /// late because the one before it was slow timed from when it was due (so a stall
    /// counts for every transaction it delays): the latency an MTA sees when the milter is
    /// not saturated.
    Paced(u64),
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Load::Closed(n) => write!(f, "{n} clients, flat out"),
            Load::Paced(rate) => write!(f, "{rate}/s paced, {OPEN_CLIENTS} clients"),
        }
    }
}

fn main() {
    let entries: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let entries = if entries.is_empty() {
        vec![0, 1_000_000, 10_000_000]
    } else {
        entries
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("| entries | load | transactions/s | p50 | p99 | daemon CPU/tx | peak RSS |");
    println!("|---|---|---|---|---|---|---|");
    for n in entries {
        let dir = tempfile::tempdir().expect("temp dir");
        // BENCH_STORE=postgres: the same run on a fresh PostgreSQL database.
        let db = match std::env::var("BENCH_STORE").as_deref() {
            Ok("postgres") => runtime.block_on(support::postgres_database(&format!("milter_{n}"))),
            _ => format!("sqlite:{}", dir.path().join("consent.db").display()),
        };
        runtime.block_on(support::fill(&db, n));
        let socket = dir.path().join("milter.sock");
        let mut daemon = start(dir.path(), &db, &socket);
        for load in [Load::Closed(16), Load::Closed(64), Load::Paced(OPEN_RATE)] {
            let cpu_before = cpu_seconds(&daemon);
            let (rate, p50, p99, count) = runtime.block_on(run(&socket, load, n));
            let cpu = (cpu_seconds(&daemon) - cpu_before) / count as f64;
            let rss = peak_rss(&daemon);
            println!(
                "| {n} | {load} | {rate:.0} | {p50:.2?} | {p99:.2?} | {:.1} µs | {:.1} MB |",
                cpu * 1e6,
                rss as f64 / 1024.0
            );
        }
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
}

fn start(dir: &Path, db: &str, socket: &Path) -> Child {
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nsocket = \"unix:{}\"\n[store]\nurl = \"{db}\"\n\
             [[classify.senders]]\nsender = \"news@example.com\"\nlist = \"weekly\"\n\
             [unsubscribe]\nhttps_base = \"https://u.example.com\"\nmailto = \"u@example.com\"\n\
             generate_missing_key = true\n[[unsubscribe.keys]]\nid = 1\nfile = \"{}/key\"\n",
            socket.display(),
            dir.display()
        ),
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("OPTOUT_MILTER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("milter.log")).expect("log"))
        .spawn()
        .expect("start optout-milter");
    let start = Instant::now();
    // Measure the steady state: wait until the consent index has loaded.
    let log = dir.join("milter.log");
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("consent index loaded")
    {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the index did not load"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("index loaded after {:.1?}", start.elapsed());
    child
}

/// One MTA session.
async fn transaction(socket: &Path, a: u64, b: u64) {
    let mut conn = TestConnection::configure()
        .open_unix(socket)
        .await
        .expect("open");
    let client: std::net::SocketAddr = "192.0.2.10:40000".parse().expect("addr");
    conn.connect("client.example", client)
        .await
        .expect("connect");
    conn.mail(["<news@example.com>"]).await.expect("mail");
    let mut accepted = 0;
    for r in [a, b] {
        let status = conn
            .rcpt([format!("<r{r}@bench.example>")])
            .await
            .expect("rcpt");
        accepted += usize::from(status == indymilter_test::Status::Continue);
    }
    if accepted > 0 {
        conn.header("From", "News <news@example.com>")
            .await
            .expect("header");
        conn.header("Subject", "This week").await.expect("header");
        conn.eom().await.expect("eom");
    } else {
        conn.abort().await.expect("abort");
    }
    conn.close().await.expect("close");
}

async fn run(socket: &Path, load: Load, entries: u64) -> (f64, Duration, Duration, usize) {
    // Recipients drawn from twenty times the opted-out range: about 5 % have opted out,
    // a high rate for a real list.
    let space = (entries * 20).max(1000);
    let (clients, interval) = match load {
        Load::Closed(n) => (n as u64, None),
        Load::Paced(rate) => (
            OPEN_CLIENTS,
            Some(Duration::from_secs_f64(OPEN_CLIENTS as f64 / rate as f64)),
        ),
    };
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let latencies = latencies.clone();
            let socket = socket.to_owned();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut x = (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                // Paced clients start spread over one interval.
                let mut due =
                    start + interval.map_or(Duration::ZERO, |i| i * c as u32 / clients as u32);
                while Instant::now() < deadline {
                    let began = match interval {
                        Some(interval) => {
                            let now = Instant::now();
                            let began = if now < due {
                                // On time: timed from when it starts, because the timer
                                // wakes up to a millisecond late.
                                tokio::time::sleep_until(due.into()).await;
                                Instant::now()
                            } else {
                                // Late because the last one was slow: timed from when
                                // it was due.
                                due
                            };
                            due += interval;
                            began
                        }
                        None => Instant::now(),
                    };
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    transaction(&socket, x % space, (x >> 32) % space).await;
                    mine.push(began.elapsed());
                }
                latencies.lock().expect("lock").extend(mine);
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = std::mem::take(&mut *latencies.lock().expect("lock"));
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed, pct(0.50), pct(0.99), all.len())
}

/// The CPU time (user + system) the daemon has used so far, in seconds.
fn cpu_seconds(daemon: &Child) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.id())).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // Linux reports in clock ticks of 1/100 s (USER_HZ) on every common architecture.
    ticks as f64 / 100.0
}

fn peak_rss(daemon: &Child) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", daemon.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
