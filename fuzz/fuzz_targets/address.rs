//! Addresses as an MTA or a CSV file writes them: normalizing never panics, and the
//! canonical form is a fixed point (normalizing it again gives it back), so one mailbox
//! always has one key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optout_milter::consent::AddressPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for policy in [
        AddressPolicy::default(),
        AddressPolicy {
            local_part_case_sensitive: false,
            subaddress_separator: Some('+'),
        },
    ] {
        if let Ok(address) = policy.normalize(text) {
            let _ = address.aliases(&policy);
            // The canonical form may hold characters that need quoting on the wire; the
            // quoted spelling of it must come back to the same key.
            let local = address.local_part();
            let quoted = format!(
                "\"{}\"@{}",
                local.replace('\\', "\\\\").replace('"', "\\\""),
                address.domain()
            );
            if let Ok(again) = policy.normalize(&quoted) {
                assert_eq!(again, address, "{text:?} -> {address} -> {quoted}");
            }
        }
    }
});
