//! OTLP metrics: the bytes as protobuf and as JSON, each request translated into series as the
//! receiver does (both histogram conversions).
#![no_main]

use amber_api::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use amber_api::otlp::translate::{Translation, translate};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let settings = [
        Translation::default(),
        Translation { promote_resource_attributes: vec!["service.name".into()], convert_histograms_to_nhcb: true },
    ];
    for req in [ExportMetricsServiceRequest::decode(data).ok(), amber_api::otlp::json::decode(data).ok()]
        .into_iter()
        .flatten()
    {
        for s in &settings {
            let _ = translate(req.clone(), s);
        }
    }
});
