//! Unsubscribe mails from raw bytes to decision, through the same intake as the milter,
//! LMTP and `ingest`, over a real store: never a panic, and never an opt-out without a
//! valid token or an authenticated sender (the fuzzer cannot forge either).
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
             [intake]\ntrusted_authserv_ids = [\"mx.example.com\"]\n",
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
