//! Compiles the vendored remote-write protobufs (`proto/`, from Prometheus, Apache-2.0) with `protox`,
//! a pure-Rust protobuf compiler, so the build needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["remote.proto", "types.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
