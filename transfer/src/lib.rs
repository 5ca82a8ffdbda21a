//! Data in and out of a running Amber, over its HTTP API: `amber import` reads history from a
//! Prometheus (remote read), a Prometheus TSDB directory or snapshot (its blocks), or OpenMetrics
//! text, and sends it to `POST /api/v1/import`; `amber export` streams `GET /api/v1/export`.

pub mod blocks;
pub mod export;
pub mod openmetrics;
pub mod progress;
pub mod remote_read;
pub mod sink;
pub mod tsdb;
