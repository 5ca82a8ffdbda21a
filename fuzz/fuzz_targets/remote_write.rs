//! Remote write 1.0: a decompressed body through prost and through the in-place reader (which
//! must agree on what they accept), with the labels, exemplars and histograms validated as the
//! receiver does; the same bytes also as a snappy body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let by_prost = amber_api::prompb::WriteRequest::decode(data).is_ok();
    let in_place = amber_api::remote_write::fuzzing::in_place(data);
    assert_eq!(by_prost, in_place, "prost and the in-place reader disagree");
    let _ = amber_api::remote_write::decode(data, 1 << 20);
});
