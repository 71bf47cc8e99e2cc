//! optout-milter's cost to Postfix: `cargo bench --bench postfix` (as root, with Postfix
//! installed; add `dkim` to compare with OpenDKIM after it against OpenDKIM alone).
//!
//! `smtp-source -s 20 -m 2000` sends to a private Postfix that relays to `smtp-sink`, in
//! interleaved runs A B A B ...: A without optout-milter, B with it (1 M opted-out
//! addresses in the store, unsubscribe headers injected), with 1 and with 2 recipients per
//! message, seven pairs each. Each pair gives the ratio B/A of messages per second; the median ratio is the
//! figure. Postfix accepts each message only after the milter answered end of message, so
//! the milter's latency is in the measured path.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

mod support;

use common::{mta::Daemon, opendkim, postfix::Postfix};
use std::{path::Path, process::Command, time::Instant};

const PAIRS: usize = 7;
const MESSAGES: u32 = 2000;
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
    println!("| recipients | pair | {a_name} msg/s | {b_name} msg/s | ratio |");
    println!("|---|---|---|---|---|");
    for recipients in [1u32, 2] {
        let mut ratios = Vec::new();
        for pair in 1..=PAIRS {
            let rate_a = run(a.smtp_port, recipients);
            let rate_b = run(b.smtp_port, recipients);
            ratios.push(rate_b / rate_a);
            println!(
                "| {recipients} | {pair} | {rate_a:.0} | {rate_b:.0} | {:.3} |",
                rate_b / rate_a
            );
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "| {recipients} | median | | | **{:.3}** |",
            ratios[PAIRS / 2]
        );
    }
    milter.stop();
}

/// Messages per second accepted by the Postfix on `port` from one smtp-source run.
fn run(port: u16, recipients: u32) -> f64 {
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
