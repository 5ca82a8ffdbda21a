//! API errors and their one mapping to an HTTP status and Prometheus's JSON error body:
//! `{"status":"error","errorType":"bad_data","error":"..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Prometheus's `errorType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Internal,
    Unavailable,
    NotFound,
    Timeout,
    Canceled,
    Unauthorized,
}

impl ErrorType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Unauthorized => "unauthorized",
        }
    }

    /// The status Prometheus's API answers with for this type.
    pub fn status(&self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
            ErrorType::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            // Prometheus's "client closed connection"; nobody is left to read it.
            ErrorType::Canceled => StatusCode::from_u16(499).expect("a valid status code"),
            ErrorType::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }
}

/// An error answered as Prometheus's JSON error body.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError { kind: ErrorType::BadData, message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError { kind: ErrorType::Internal, message: message.into() }
    }
}

impl From<amber_storage::Error> for ApiError {
    fn from(e: amber_storage::Error) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "a source did not answer");
            return ApiError { kind: ErrorType::Unavailable, message: e.to_string() };
        }
        if let amber_storage::Error::PeerRefused { .. } = e {
            return ApiError { kind: ErrorType::Execution, message: e.to_string() };
        }
        tracing::error!(error = %e, "storage error");
        ApiError::internal(e.to_string())
    }
}

impl From<crate::tenant::TenantError> for ApiError {
    fn from(e: crate::tenant::TenantError) -> Self {
        let kind = match e.status {
            StatusCode::UNAUTHORIZED => ErrorType::Unauthorized,
            StatusCode::BAD_REQUEST => ErrorType::BadData,
            _ => ErrorType::Internal,
        };
        ApiError { kind, message: e.message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            status: &'static str,
            #[serde(rename = "errorType")]
            error_type: &'static str,
            error: &'a str,
        }
        let body = Body { status: "error", error_type: self.kind.as_str(), error: &self.message };
        let json = serde_json::to_string(&body).expect("strings always encode");
        (self.kind.status(), [("content-type", "application/json")], json).into_response()
    }
}

/// Runs blocking storage work off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("task failed: {e}")))?
}
