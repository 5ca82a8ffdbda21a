//! The side-by-side benchmark (`amber-bench`, see `main.rs`) and what the criterion
//! micro-benchmarks in `benches/` share with it: the generated workload.

pub mod bucket;
pub mod cluster;
pub mod import;
pub mod measure;
pub mod soak;
pub mod systems;
pub mod workload;
