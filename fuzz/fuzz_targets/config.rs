//! Config files: parsing and validation give a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optout_milter::config::{Config, Overrides};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(
        std::path::Path::new("fuzz.toml"),
        text,
        &Overrides::default(),
    ) {
        let _ = config.warnings();
    }
});
