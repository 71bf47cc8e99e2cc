//! Unsubscribe mails from raw bytes to decision, through the same intake as the milter,
//! LMTP and `ingest`, over a real store: never a panic, and never an opt-out without a
//! valid token or an authenticated sender (the fuzzer cannot forge either).
#![no_main]

use libfuzzer_sys::fuzz_target;
use optout_milter::intake::{Envelope, Outcome};
use std::sync::OnceLock;

#[path = "../support/intake.rs"]
mod support;

fn world() -> &'static support::World {
    static WORLD: OnceLock<support::World> = OnceLock::new();
    WORLD.get_or_init(|| support::world(""))
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let envelope = Envelope {
        sender: Some("reader@example.org".into()),
        recipients: vec!["unsubscribe@example.com".into()],
    };
    let outcome = world
        .runtime
        .block_on(world.intake.process(&envelope, data));
    if let Ok(Outcome::Unsubscribed(done)) = outcome {
        // Only an authenticated From can unsubscribe without a token; the fuzzer may
        // write such a header (the trusted authserv-id is public), never a token.
        for u in done {
            assert_eq!(
                u.found_in,
                "authenticated From",
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }
});
