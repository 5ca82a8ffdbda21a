//! OTLP over gRPC: `MetricsService/Export`, the default protocol of the OpenTelemetry SDKs
//! (`OTEL_EXPORTER_OTLP_ENDPOINT=http://<amber>:4317`). Tenant and credentials come from the
//! `x-scope-orgid` and `authorization` metadata, as HTTP headers do; the write path is the HTTP
//! receiver's.

use tonic::{Code, Request, Response, Status};

use super::proto::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use super::proto::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use crate::AppState;
use crate::remote_write::{WriteError, write_permit};

pub struct MetricsExport {
    state: AppState,
}

/// The gRPC service, gzip accepted, messages up to the decoded body limit.
pub fn service(state: AppState) -> MetricsServiceServer<MetricsExport> {
    let max = state.limits.max_decoded_bytes;
    MetricsServiceServer::new(MetricsExport { state })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max)
}

/// gRPC's code for an HTTP-style refusal: retryable ones are UNAVAILABLE, as OTLP exporters
/// retry on it.
fn status(e: WriteError) -> Status {
    let code = match e.status.as_u16() {
        401 => Code::Unauthenticated,
        400 | 413 | 415 => Code::InvalidArgument,
        _ => Code::Unavailable,
    };
    Status::new(code, e.message)
}

#[tonic::async_trait]
impl MetricsService for MetricsExport {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let headers = request.metadata().clone().into_headers();
        let state = &self.state;
        let tenant = crate::tenant::for_write(state, &headers).map_err(|e| status(e.into()))?;
        let _permit = write_permit(state).map_err(status)?;
        let started = std::time::Instant::now();
        let answer = super::write(state, &tenant, request.into_inner()).await;
        let code = answer.as_ref().map_or_else(|e| e.status.as_u16(), |_| 200);
        state.metrics.observe_write(code, started.elapsed());
        answer.map(Response::new).map_err(status)
    }
}
