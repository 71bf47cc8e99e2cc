//! The pages in a real headless Chromium: open the link, click Unsubscribe, see the
//! confirmation, click undo, and the store is back to no record; the preferences page at a
//! desktop's and a phone's width: a per-list change, unsubscribe from all, undo back to no
//! record. Screenshots of each page go to `target/tmp/browser/`.
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
offers = "Offers and deals"
events = "Events near you"

[web.brand]
privacy_url = "https://example.com/privacy"
contact_url = "mailto:help@example.com"
footer = "Example News Ltd, 1 Example Street, London"
"#;

fn link(daemon: &Daemon, web_port: u16, address: &str) -> String {
    let minted = daemon.cli(&["token", "mint", address, "--list", "weekly-news"]);
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
    let url = link(&daemon, web_port, "jane.doe@example.org");

    let browser = Browser::start("en-US");
    browser.open(&url);
    browser.text_with("You followed a link to unsubscribe from The Weekly.");
    browser.screenshot(&shots.join("1-question.png"));
    assert!(
        daemon
            .cli(&["consent", "get", "jane.doe@example.org"])
            .contains("no records"),
        "GET changed the store"
    );

    browser.click("#unsubscribe");
    browser.text_with("You are unsubscribed");
    browser.screenshot(&shots.join("2-unsubscribed.png"));
    assert!(
        daemon
            .cli(&["consent", "get", "jane.doe@example.org"])
            .contains("\tweekly-news\tn\tweb\t")
    );

    browser.click("#undo");
    browser.text_with("Your previous choices are back");
    browser.screenshot(&shots.join("3-undone.png"));
    // Back to no record, as before the click: not an explicit yes.
    let now = daemon.cli(&["consent", "get", "jane.doe@example.org"]);
    assert!(now.contains("no records"), "{now}");

    // The same link in a French browser.
    let french = Browser::start("fr-FR");
    french.open(&url);
    french.text_with("Vous avez suivi un lien pour vous désabonner de The Weekly.");
    french.screenshot(&shots.join("4-question-fr.png"));
    daemon.stop();
}

/// Issue 14, item 4: the preferences page at 1200 and 390 pixels wide: untick a list and
/// save, unsubscribe from all, undo back to no record; the store checked at each step.
#[test]
fn preference_centre_at_desktop_and_phone_widths() {
    if !require_programs("preference_centre_at_desktop_and_phone_widths", &PROGRAMS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let web_port = free_port();
    let config = CONFIG
        .replace("@DIR@", &dir.path().to_string_lossy())
        .replace("@WEB_PORT@", &web_port.to_string());
    let daemon = Daemon::start(dir.path(), &config);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    for (width, height, lang) in [
        (1200, 900, "en-US"),
        (390, 844, "en-US"),
        (390, 844, "fr-FR"),
    ] {
        let name = |step: &str| shots.join(format!("preferences-{width}-{lang}-{step}.png"));
        let address = format!("reader{width}.{lang}@example.org").to_lowercase();
        let get = || daemon.cli(&["consent", "get", &address]);
        let browser = Browser::start(lang);
        browser.viewport(width, height);
        browser.open(&link(&daemon, web_port, &address));
        let french = lang.starts_with("fr");
        browser.text_with(if french { "Vos listes" } else { "Your lists" });
        browser.screenshot(&name("1-preferences"));
        assert!(get().contains("no records"), "GET changed the store");

        // A per-list change: untick "Offers and deals" and save.
        browser.click("input[value=offers]");
        browser.click("#save");
        browser.text_with(if french {
            "Vos choix sont enregistrés"
        } else {
            "Your choices are saved"
        });
        browser.screenshot(&name("2-saved"));
        let now = get();
        assert!(now.contains("\toffers\tn\tweb\t"), "{now}");
        assert!(
            !now.contains("weekly-news") && !now.contains("events"),
            "{now}"
        );

        // Back to the page: offers shows unsubscribed. Unsubscribe from all.
        browser.click("main a");
        browser.text_with(if french {
            "Désabonné(e)"
        } else {
            "Unsubscribed"
        });
        browser.screenshot(&name("3-after-save"));
        browser.click("#unsubscribe-all");
        browser.text_with(if french {
            "Vous êtes désabonné(e)"
        } else {
            "You are unsubscribed"
        });
        browser.screenshot(&name("4-unsubscribed-all"));
        assert!(get().contains("\t*\tn\tweb\t"), "{}", get());

        // Undo: all marketing back to no record; the list change before it stays.
        browser.click("#undo");
        browser.text_with(if french {
            "Vos choix précédents sont rétablis"
        } else {
            "Your previous choices are back"
        });
        browser.screenshot(&name("5-undone"));
        let now = get();
        assert!(!now.contains("\t*\t"), "{now}");
        assert!(now.contains("\toffers\tn\tweb\t"), "{now}");
        let history = daemon.cli(&["consent", "history", &address]);
        assert!(history.contains("\t*\t-\tweb\t"), "{history}");
    }
    daemon.stop();
}
