//! Compiles the vendored protobufs with `protox`, a pure-Rust protobuf compiler, so the build
//! needs no system `protoc`: Prometheus's remote write 1.0 (`proto/*.proto`) and 2.0
//! (`proto/io/prometheus/write/v2/types.proto`), Apache-2.0, with prost, and the OpenTelemetry
//! metrics export service (`proto/opentelemetry/`, Apache-2.0) with tonic, which adds its gRPC
//! server and client.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let remote_write = protox::compile(["remote.proto", "types.proto", "io/prometheus/write/v2/types.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(remote_write)?;
    let otlp = protox::compile(["opentelemetry/proto/collector/metrics/v1/metrics_service.proto"], ["proto"])?;
    tonic_build::configure().build_server(true).build_client(true).compile_fds(otlp)?;
    Ok(())
}
