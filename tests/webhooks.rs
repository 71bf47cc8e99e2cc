//! Issue 14, item 2: every change, whatever its source, delivered to a webhook: signed
//! as Standard Webhooks describes, at least once (exactly once by idempotency key),
//! retried while the receiver fails, and never lost to a crash.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    api::{self, WRITE, json, request},
    mta::{Daemon, daemon_config, wait_for},
    webhook::{self, Receiver},
};
use optout_milter::consent::ConsentValue;
use serde_json::json;
use std::time::Duration;

/// Waits (async) until `done` says so.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_change_arrives_signed_and_exactly_once_through_failed_attempts() {
    let receiver = Receiver::start();
    receiver.fail_next(3);
    let extra = format!(
        "{}{}",
        api::CONFIG,
        webhook::config(&receiver.url(), "crm-hook")
    );
    let milter = common::start("", &extra).await;
    let api = milter.api.unwrap();
    // Six changes by three ways in: the API, the daemon's own writes (as one-click, the
    // intake and complaints write), and an import.
    for value in ["n", "y"] {
        let r = request(
            api,
            "PUT",
            "/v1/consent/ann@example.org",
            Some(WRITE),
            json(&json!({"value": value})),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    milter.set("bob@example.org", "*", ConsentValue::No).await;
    let r = request(
        api,
        "POST",
        "/v1/import?scope=weekly-news",
        Some(WRITE),
        Some((
            "text/csv",
            b"cid@example.org\ndee@example.org\nann@example.org\n".to_vec(),
        )),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    until("six events accepted", || {
        receiver.seen(|s| s.accepted.len() >= 6)
    })
    .await;
    receiver.seen(|seen| {
        assert_eq!(seen.bad_signatures, 0);
        assert_eq!(seen.accepted.len(), 6, "{:?}", seen.order);
        // The first three attempts failed, and were retried under the same ids.
        let failed: Vec<_> = seen
            .attempts
            .iter()
            .filter(|a| !a.1)
            .map(|a| a.0.clone())
            .collect();
        assert_eq!(failed.len(), 3);
        assert!(
            failed.iter().all(|id| seen.accepted.contains_key(id)),
            "{failed:?}"
        );
        // Each event once, and each of the right shape.
        for (id, (event, times)) in &seen.accepted {
            assert_eq!(*times, 1, "{id}");
            assert_eq!(event["type"], "consent.changed");
            assert_eq!(format!("chg_{}", event["data"]["id"]), *id);
            assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
        }
        // One address's changes in the order they were made.
        let ann: Vec<(String, String)> = seen
            .order
            .iter()
            .map(|id| &seen.accepted[id].0["data"])
            .filter(|d| d["address"] == "ann@example.org")
            .map(|d| {
                (
                    d["value"].as_str().unwrap().to_owned(),
                    d["scope"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            ann,
            [
                ("n".into(), "*".into()),
                ("y".into(), "*".into()),
                ("n".into(), "weekly-news".into())
            ]
        );
        let sources: std::collections::BTreeSet<String> = seen
            .accepted
            .values()
            .map(|(e, _)| e["data"]["source"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sources, ["api", "cli", "import"].map(String::from).into());
    });
    // The backlog and the attempts are in the metrics, once the daemon has read the
    // receiver's last answer (the receiver counts an event before the daemon does).
    for line in [
        "optout_milter_webhook_deliveries_total{webhook=\"crm-hook\",outcome=\"failed-attempt\"} 3",
        "optout_milter_webhook_deliveries_total{webhook=\"crm-hook\",outcome=\"delivered\"} 6",
    ] {
        until(line, || {
            optout_milter::metrics::get().encode().contains(line)
        })
        .await;
    }
    until("an empty backlog", || {
        optout_milter::metrics::get()
            .encode()
            .contains("optout_milter_webhook_backlog{webhook=\"crm-hook\"} 0")
    })
    .await;
    milter.stop().await;
}

/// The webhook of a real daemon, killed with SIGKILL while its receiver refused an
/// event, and a change made while it was down: both arrive after the restart. Changes
/// from before the webhook was configured are not replayed, and what was delivered before
/// the crash is not sent again.
#[test]
fn kill_9_between_a_change_and_its_delivery_loses_nothing() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    webhook::write_secret(dir.path());
    let plain = daemon_config(dir.path(), "");
    let daemon = Daemon::start(dir.path(), &plain);
    daemon.cli(&["consent", "set", "old@example.org", "--value", "n"]);
    daemon.stop();
    let with_hook = daemon_config(dir.path(), &webhook::config(&receiver.url(), "crash-hook"));
    let mut daemon = Daemon::start(dir.path(), &with_hook);
    let accepted = |address: &str| {
        receiver.seen(|s| {
            s.accepted
                .values()
                .filter(|(e, _)| e["data"]["address"] == address)
                .map(|(_, times)| *times)
                .sum::<usize>()
        })
    };
    daemon.cli(&["consent", "set", "first@example.org", "--value", "n"]);
    wait_for("first@ delivered", Duration::from_secs(30), || {
        (accepted("first@example.org") == 1).then_some(())
    });
    receiver.refuse(true);
    daemon.cli(&["consent", "set", "kim@example.org", "--value", "n"]);
    wait_for("an attempt for kim@", Duration::from_secs(30), || {
        receiver
            .seen(|s| s.attempts.iter().any(|a| !a.1))
            .then_some(())
    });
    daemon.kill9();
    // Recorded while the daemon is down (the CLI writes the store itself).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_optout-milter"))
        .arg("--config")
        .arg(dir.path().join("optout-milter.toml"))
        .args(["consent", "set", "lee@example.org", "--value", "n"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    receiver.refuse(false);
    daemon.restart();
    wait_for("kim@ and lee@ delivered", Duration::from_secs(30), || {
        (accepted("kim@example.org") >= 1 && accepted("lee@example.org") >= 1).then_some(())
    });
    assert_eq!(
        accepted("first@example.org"),
        1,
        "delivered before the crash: not again"
    );
    assert_eq!(
        accepted("old@example.org"),
        0,
        "from before the webhook: not replayed"
    );
    receiver.seen(|s| {
        let order: Vec<_> = s
            .order
            .iter()
            .map(|id| {
                s.accepted[id].0["data"]["address"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            order,
            ["first@example.org", "kim@example.org", "lee@example.org"]
        );
        assert_eq!(s.bad_signatures, 0);
    });
    daemon.stop();
}
