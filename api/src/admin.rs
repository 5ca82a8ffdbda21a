//! The admin endpoints, served only with `--enable-admin-api`, as Prometheus gates its own.
//!
//! `POST /api/v1/admin/tsdb/seal`: seal every head window that can be sealed now and compact the
//! store, so that bytes on disk can be measured (the benchmark's counterpart of VictoriaMetrics'
//! force-merge).
//!
//! `POST /api/v1/admin/tsdb/snapshot`: Prometheus's snapshot, `{"name": "<time>-<random>"}`, a
//! consistent copy of the store under `<data-dir>/snapshots/<name>` taken while writes go on
//! ([`amber_storage::snapshot`]); `amber --data-dir <that directory>` opens it. The head is always
//! in it (Prometheus's `skip_head` would drop acknowledged writes from a backup).

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::response::success;

pub async fn snapshot(State(state): State<AppState>) -> Response {
    use std::hash::{BuildHasher, Hasher};
    // A random suffix as Prometheus's, from the standard library's per-process random keys.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let name = format!("{}-{random:016x}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    let storage = state.storage.clone();
    let dir = storage.path().join("snapshots").join(&name);
    let result = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let report = storage.snapshot(&dir)?;
        tracing::info!(dir = %report.dir.display(), wal_segments = report.wal_segments, elapsed_ms = started.elapsed().as_millis() as u64, "snapshot");
        Ok::<_, amber_storage::Error>(())
    })
    .await;
    match result {
        Ok(Ok(())) => success(serde_json::json!({ "name": name }), Vec::new()),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::internal(format!("snapshot task failed: {e}")).into_response(),
    }
}

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
