//! The landing page in a real headless Chromium: open the link, click Unsubscribe, see the
//! confirmation, click undo, and the store shows consent restored. Screenshots of each page
//! go to `target/tmp/browser/`.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{Daemon, free_port, require_programs},
    webdriver::{Browser, PROGRAMS},
};
use std::path::Path;

const CONFIG: &str = r#"
[milter]
socket = "inet:127.0.0.1:@PORT@"

[store]
url = "sqlite:@DIR@/consent.db"

[unsubscribe]
https_base = "https://unsubscribe.example.com"
mailto = "unsubscribe@example.com"
generate_missing_key = true

[[unsubscribe.keys]]
id = 1
file = "@DIR@/token.key"

[web]
listen = "127.0.0.1:@WEB_PORT@"
sender_name = "Example News"

[web.lists]
weekly-news = "The Weekly"
"#;

fn link(daemon: &Daemon, web_port: u16) -> String {
    let minted = daemon.cli(&[
        "token",
        "mint",
        "jane.doe@example.org",
        "--list",
        "weekly-news",
    ]);
    let https = minted
        .lines()
        .find_map(|l| l.strip_prefix("https: "))
        .unwrap();
    https.replace(
        "https://unsubscribe.example.com",
        &format!("http://127.0.0.1:{web_port}"),
    )
}

#[test]
fn unsubscribe_and_undo_in_a_real_browser() {
    if !require_programs("unsubscribe_and_undo_in_a_real_browser", &PROGRAMS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let web_port = free_port();
    let config = CONFIG
        .replace("@DIR@", &dir.path().to_string_lossy())
        .replace("@WEB_PORT@", &web_port.to_string());
    let daemon = Daemon::start(dir.path(), &config);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let url = link(&daemon, web_port);

    let browser = Browser::start("en-US");
    browser.open(&url);
    browser.text_with("Unsubscribe j***@example.org from The Weekly?");
    browser.screenshot(&shots.join("1-question.png"));
    assert!(
        daemon
            .cli(&["consent", "get", "jane.doe@example.org"])
            .contains("no records"),
        "GET changed the store"
    );

    browser.click("button[type=submit]");
    browser.text_with("You are unsubscribed");
    browser.screenshot(&shots.join("2-unsubscribed.png"));
    assert!(
        daemon
            .cli(&["consent", "get", "jane.doe@example.org"])
            .contains("\tweekly-news\tn\tweb\t")
    );

    browser.click("button.secondary");
    browser.text_with("You are subscribed again");
    browser.screenshot(&shots.join("3-subscribed-again.png"));
    assert!(
        daemon
            .cli(&["consent", "get", "jane.doe@example.org"])
            .contains("\tweekly-news\ty\tweb\t")
    );

    // The same link in a French browser.
    let french = Browser::start("fr-FR");
    french.open(&url);
    french.text_with("Désabonner j***@example.org de The Weekly\u{202f}?");
    french.screenshot(&shots.join("4-question-fr.png"));
    daemon.stop();
}
