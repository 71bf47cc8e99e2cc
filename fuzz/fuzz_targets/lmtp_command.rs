//! LMTP command lines from a client: parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = optout_milter::lmtp::parse_command(data);
});
