//! Compiles the vendored protobufs with `protox`, a pure-Rust protobuf compiler, so the build
//! needs no system `protoc`: Prometheus's remote write (`proto/*.proto`, Apache-2.0) and the
//! OpenTelemetry metrics export service (`proto/opentelemetry/`, Apache-2.0).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(
        ["remote.proto", "types.proto", "opentelemetry/proto/collector/metrics/v1/metrics_service.proto"],
        ["proto"],
    )?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
