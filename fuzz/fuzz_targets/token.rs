//! Tokens as they arrive in a URL path, a mailto local part or a Subject: verification
//! never panics, and nothing forged verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optout_milter::token::{Keyring, TokenCodec};
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let keys = Keyring::from_secrets(1, [(1, vec![7; 32])]);
    let codec = TokenCodec::new(keys, Duration::from_secs(60 * 86_400));
    let now = SystemTime::now();
    if let Ok(verified) = codec.verify(text, now) {
        // A token that verifies must be one the codec would mint for its claims.
        let again = codec.mint(verified.claims.subject, verified.claims.issued());
        assert!(again.is_ok(), "{text:?}");
    }
    for candidate in optout_milter::intake::parse::token_candidates(text) {
        let _ = codec.verify(&candidate, now);
    }
});
