//! Files given to `consent import`: reading never panics, and every row reported lies
//! within the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optout_milter::import::{Purpose, read};

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|&b| b == b'\n').count() as u64;
    if let Ok(table) = read(data, Purpose::OptOuts) {
        for (line, _) in &table.rows {
            assert!(*line >= 1 && *line <= lines, "line {line} of {lines}");
        }
    }
});
