//! Build information, health and readiness.

use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::response::success;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo {
    version: &'static str,
    revision: &'static str,
    branch: &'static str,
    build_user: &'static str,
    build_date: &'static str,
    go_version: &'static str,
}

/// `GET /api/v1/status/buildinfo`, in Prometheus's shape (Grafana reads `version` from it).
pub async fn buildinfo() -> Response {
    success(
        BuildInfo {
            version: env!("CARGO_PKG_VERSION"),
            revision: option_env!("AMBER_GIT_REVISION").unwrap_or("unknown"),
            branch: "",
            build_user: "",
            build_date: "",
            go_version: "",
        },
        Vec::new(),
    )
}

/// `GET /-/healthy`: the process is up.
pub async fn healthy() -> Response {
    "Amber is Healthy.\n".into_response()
}

/// `GET /-/ready`: the store is open and requests are served (the router exists only then).
pub async fn ready() -> Response {
    "Amber is Ready.\n".into_response()
}
