//! Feedback-loop reports to the complaints address from raw bytes to decision, through
//! the same intake as the milter, LMTP and `ingest`, over a real store: never a panic,
//! and never an opt-out without a valid token or an authenticated feedback loop (the
//! fuzzer cannot forge a token; it may write a trusted Authentication-Results header,
//! whose authserv-id is public, so that path is allowed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use optout_milter::{
    config::{Config, Overrides},
    intake::{Envelope, Intake, Outcome},
    store,
    unsubscribe::Unsubscribe,
};
use std::sync::{Arc, OnceLock};

struct World {
    runtime: tokio::runtime::Runtime,
    intake: Intake,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            "[unsubscribe]\nhttps_base = \"https://u.example.com\"\nmailto = \"unsubscribe@example.com\"\n\
             generate_missing_key = true\n[[unsubscribe.keys]]\nid = 1\nfile = \"{0}/k\"\n\
             [intake]\ntrusted_authserv_ids = [\"mx.example.com\"]\n\
             [complaints]\naddress = \"fbl@example.com\"\n\
             authenticated_senders = [\"feedback.example.net\"]\n",
            dir.path().display()
        );
        let overrides = Overrides {
            store_url: Some(format!("sqlite:{}/c.db", dir.path().display())),
            socket: None,
        };
        let config = Config::parse(std::path::Path::new("fuzz.toml"), &text, &overrides)
            .expect("config");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = runtime
            .block_on(store::open_or_create(&config.store_url))
            .expect("store");
        let unsubscribe =
            Arc::new(Unsubscribe::load(config.unsubscribe.clone().expect("unsubscribe")).expect("key"));
        let intake = Intake::new(
            config.intake.clone().expect("intake"),
            store,
            unsubscribe,
            config.addresses.clone(),
        );
        World {
            runtime,
            intake,
            _dir: dir,
        }
    })
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
