//! Remote write 2.0: a decompressed body through prost, its histograms turned into samples as
//! the receiver does; the same bytes also as a snappy body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = amber_api::prompb::writev2::Request::decode(data) {
        amber_api::remote_write::fuzzing::v2_histograms(&req);
    }
    let _ = amber_api::remote_write::decode_v2(data, 1 << 20);
});
