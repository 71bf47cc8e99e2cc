//! optout-milter's cost to Postfix: `cargo bench --bench postfix` (as root, with Postfix
//! installed; add `dkim` to compare with OpenDKIM after it against OpenDKIM alone).
//!
//! `smtp-source -s 20 -m 3000` sends to a private Postfix that relays to `smtp-sink`, in
//! interleaved runs A B C A B C ...: A without optout-milter, B with it (1 M opted-out
//! addresses in the store, unsubscribe headers injected), C with a milter that does
//! nothing at all (it asks only for end of message and changes nothing: what any milter
//! costs Postfix), with 1 and with 2 recipients per message, seven rounds each. Each
//! round gives the ratios B/A, C/A and B/C of messages per second (B/C: what
//! optout-milter costs beyond what any milter costs); the medians are the figures. Each
//! run starts once the queue of the one before has been delivered. Postfix accepts each
//! message only after the milter answered end of message, so the milter's latency is in
//! the measured path. With `dkim`, A is OpenDKIM alone, B
//! optout-milter then OpenDKIM, and there is no C.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

mod support;

use common::{mta::Daemon, opendkim, postfix::Postfix};
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

const ROUNDS: usize = 7;
const MESSAGES: u32 = 3000;
const SESSIONS: u32 = 20;
const ENTRIES: u64 = 1_000_000;

const CONFIG: &str = r#"
[milter]
socket = "inet:127.0.0.1:@PORT@"

[store]
url = "sqlite:@DIR@/consent.db"

[[classify.senders]]
sender = "news@example.com"
list = "weekly"

[unsubscribe]
https_base = "https://u.example.com"
mailto = "u@example.com"
generate_missing_key = true

[[unsubscribe.keys]]
id = 1
file = "@DIR@/token.key"
"#;

fn main() {
    let with_dkim = std::env::args().any(|a| a == "dkim");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite:{}", dir.path().join("consent.db").display());
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(support::fill(&db, ENTRIES));
    let milter = Daemon::start(
        dir.path(),
        &CONFIG.replace("@DIR@", &dir.path().to_string_lossy()),
    );
    let dkim = with_dkim.then(|| {
        let dkim_dir = Path::new("/var/lib/optout-milter-tests/bench-dkim");
        let _ = std::fs::remove_dir_all(dkim_dir);
        std::fs::create_dir_all(dkim_dir).expect("dkim dir");
        opendkim::start(dkim_dir)
    });
    let (baseline, measured) = match &dkim {
        Some((_, port)) => (
            format!("inet:127.0.0.1:{port}"),
            format!("inet:127.0.0.1:{}, inet:127.0.0.1:{port}", milter.port),
        ),
        None => (String::new(), format!("inet:127.0.0.1:{}", milter.port)),
    };
    let a_name = if with_dkim {
        "OpenDKIM alone"
    } else {
        "no milter"
    };
    let b_name = if with_dkim {
        "optout-milter + OpenDKIM"
    } else {
        "optout-milter"
    };
    // Empty milter lists: the later definition in main.cf wins.
    let none = format!("smtpd_milters = {baseline}\nnon_smtpd_milters = {baseline}\n");
    let a = Postfix::start_with("bench-a", "inet:127.0.0.1:1", &none, "");
    let b = Postfix::start("bench-b", &measured);
    let null = (!with_dkim).then(|| {
        let port = null_milter();
        Postfix::start("bench-c", &format!("inet:127.0.0.1:{port}"))
    });
    match &null {
        Some(_) => {
            println!(
                "| recipients | round | {a_name} msg/s | {b_name} msg/s | null milter msg/s | B/A | C/A | B/C |"
            );
            println!("|---|---|---|---|---|---|---|---|");
        }
        None => {
            println!("| recipients | round | {a_name} msg/s | {b_name} msg/s | B/A |");
            println!("|---|---|---|---|---|");
        }
    }
    for recipients in [1u32, 2] {
        let (mut b_ratios, mut c_ratios, mut bc_ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            let rate_a = run(&a, recipients);
            let rate_b = run(&b, recipients);
            b_ratios.push(rate_b / rate_a);
            match &null {
                Some(c) => {
                    let rate_c = run(c, recipients);
                    c_ratios.push(rate_c / rate_a);
                    bc_ratios.push(rate_b / rate_c);
                    println!(
                        "| {recipients} | {round} | {rate_a:.0} | {rate_b:.0} | {rate_c:.0} | {:.3} | {:.3} | {:.3} |",
                        rate_b / rate_a,
                        rate_c / rate_a,
                        rate_b / rate_c
                    );
                }
                None => println!(
                    "| {recipients} | {round} | {rate_a:.0} | {rate_b:.0} | {:.3} |",
                    rate_b / rate_a
                ),
            }
        }
        match &null {
            Some(_) => println!(
                "| {recipients} | median | | | | **{:.3}** | **{:.3}** | **{:.3}** |",
                median(&mut b_ratios),
                median(&mut c_ratios),
                median(&mut bc_ratios)
            ),
            None => println!(
                "| {recipients} | median | | | **{:.3}** |",
                median(&mut b_ratios)
            ),
        }
    }
    milter.stop();
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Starts a milter that does nothing, on a thread of its own, and returns its port: it
/// registers only end of message (so Postfix skips every other stage) and answers
/// "continue" without changes. It listens through optout-milter's own listener, with the
/// same TCP options, so that it measures what the milter protocol costs Postfix and
/// nothing else.
fn null_milter() -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let spec = "inet:127.0.0.1:0".parse().expect("socket");
            let socket = optout_milter::milter::bind(&spec, Default::default()).expect("bind");
            let addr = socket.local_addr().expect("addr");
            let listener = socket.into_bound().expect("register").listener;
            tx.send(addr.port()).expect("port");
            let callbacks = indymilter::Callbacks::<()>::new()
                .on_eom(|_| Box::pin(async { indymilter::Status::Continue }));
            indymilter::run(
                listener,
                callbacks,
                indymilter::Config::default(),
                std::future::pending::<()>(),
            )
            .await
            .expect("null milter");
        });
    });
    rx.recv().expect("null milter port")
}

/// Messages per second accepted by `postfix` from one smtp-source run. Returns once the
/// queue is empty again, so that no run competes with the deliveries of the one before.
fn run(postfix: &Postfix, recipients: u32) -> f64 {
    let rate = accept(postfix.smtp_port, recipients);
    common::mta::wait_for("the queue to drain", Duration::from_secs(300), || {
        postfix.queue_is_empty().then_some(())
    });
    rate
}

/// Messages per second accepted by the Postfix on `port` from one smtp-source run.
fn accept(port: u16, recipients: u32) -> f64 {
    let start = Instant::now();
    let out = Command::new("/usr/sbin/smtp-source")
        .args([
            "-s",
            &SESSIONS.to_string(),
            "-m",
            &MESSAGES.to_string(),
            "-r",
            &recipients.to_string(),
        ])
        .args([
            "-l",
            "2000",
            "-f",
            "news@example.com",
            "-t",
            "reader@bench.example",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("smtp-source");
    assert!(
        out.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    f64::from(MESSAGES) / start.elapsed().as_secs_f64()
}
