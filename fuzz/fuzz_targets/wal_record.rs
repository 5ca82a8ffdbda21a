//! One record of the write-ahead log as replay reads it after a crash (plain or zstd-compressed).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = amber_storage::fuzz_wal_record(data);
});
