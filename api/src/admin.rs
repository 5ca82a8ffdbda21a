//! `POST /api/v1/admin/tsdb/seal`: seal every head window that can be sealed now and compact the
//! store, so that bytes on disk can be measured (the benchmark's counterpart of Prometheus's
//! snapshot and VictoriaMetrics' force-merge). Served only with `--enable-admin-api`, as
//! Prometheus gates its own admin endpoints.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::response::success;

pub async fn seal(State(state): State<AppState>) -> Response {
    let (storage, metrics) = (state.storage.clone(), state.metrics.clone());
    let result = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let report = storage.seal(amber_storage::now_ms())?;
        metrics.observe_seal(started.elapsed());
        storage.compact();
        Ok::<_, amber_storage::Error>(report)
    })
    .await;
    match result {
        Ok(Ok(r)) => success(
            serde_json::json!({
                "sampleBlocksWritten": r.sample_blocks_written,
                "samplesSealed": r.samples_sealed,
                "histogramBlocksWritten": r.histogram_blocks_written,
                "histogramsSealed": r.histograms_sealed,
                "exemplarBlocksWritten": r.exemplar_blocks_written,
                "exemplarsSealed": r.exemplars_sealed,
            }),
            Vec::new(),
        ),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::internal(format!("sealing task failed: {e}")).into_response(),
    }
}
