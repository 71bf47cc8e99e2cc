//! The intake the mail targets feed: a real SQLite store in a temporary folder, a token
//! key, and `[intake]` with `extra` configuration after it.

use optout_milter::{
    config::{Config, Overrides},
    intake::Intake,
    store,
    unsubscribe::Unsubscribe,
};
use std::sync::Arc;

pub struct World {
    pub runtime: tokio::runtime::Runtime,
    pub intake: Intake,
    _dir: tempfile::TempDir,
}

/// The intake with `extra` appended to its `[intake]` section.
pub fn world(extra: &str) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "[unsubscribe]\nhttps_base = \"https://u.example.com\"\nmailto = \"unsubscribe@example.com\"\n\
         generate_missing_key = true\n[[unsubscribe.keys]]\nid = 1\nfile = \"{0}/k\"\n\
         [intake]\ntrusted_authserv_ids = [\"mx.example.com\"]\n{extra}",
        dir.path().display()
    );
    let overrides = Overrides {
        store_url: Some(format!("sqlite:{}/c.db", dir.path().display())),
        socket: None,
    };
    let config =
        Config::parse(std::path::Path::new("fuzz.toml"), &text, &overrides).expect("config");
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
}
