//! Feedback-loop reports to the complaints address from raw bytes to decision, through
//! the same intake as the milter, LMTP and `ingest`, over a real store: never a panic,
//! and never an opt-out without a valid token or an authenticated feedback loop (the
//! fuzzer cannot forge a token; it may write a trusted Authentication-Results header,
//! whose authserv-id is public, so that path is allowed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use optout_milter::intake::{Envelope, Outcome};
use std::sync::OnceLock;

#[path = "../support/intake.rs"]
mod support;

fn world() -> &'static support::World {
    static WORLD: OnceLock<support::World> = OnceLock::new();
    WORLD.get_or_init(|| support::world("[complaints]\naddress = \"fbl@example.com\"\nauthenticated_senders = [\"feedback.example.net\"]\n"))
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let envelope = Envelope {
        sender: Some("feedback@arf.mail.yahoo.com".into()),
        recipients: vec!["fbl@example.com".into()],
    };
    let outcome = world
        .runtime
        .block_on(world.intake.process(&envelope, data));
    match outcome {
        // Only a report of an authenticated loop may name the recipient without a token.
        Ok(Outcome::Complained(u)) => assert!(
            matches!(u.found_in, "Original-Rcpt-To" | "To"),
            "{:?}",
            String::from_utf8_lossy(data)
        ),
        Ok(Outcome::Unsubscribed(_)) => {
            panic!(
                "a report was taken as an unsubscribe mail: {:?}",
                String::from_utf8_lossy(data)
            )
        }
        _ => {}
    }
});
