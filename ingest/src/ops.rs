//! What operators see of a running worker: `/healthz` and Prometheus `/metrics` over HTTP.
//!
//! The listener binds to loopback unless told otherwise: metrics name buckets, tables and error
//! reasons, which is nobody's business outside the host (or the pod, where a sidecar scrapes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::worker::Heartbeat;
use crate::{IngestError, Result};

/// Installs the process-wide Prometheus recorder; every `metrics::` call records into it from then on.
pub fn install_metrics() -> Result<PrometheusHandle> {
    let seconds = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
        .and_then(|b| b.install_recorder())
        .map_err(|e| IngestError::Config(format!("cannot install the metrics recorder: {e}")))
}

#[derive(Clone)]
struct OpsState {
    metrics: PrometheusHandle,
    heartbeat: Arc<Heartbeat>,
    /// The worker is unhealthy when its loop has not gone round for this long.
    stall_after: Duration,
}

/// Serves `/healthz` and `/metrics` on `listen` until the process ends. Returns the bound address
/// (useful with port 0).
pub async fn serve_ops(
    listen: SocketAddr,
    metrics: PrometheusHandle,
    heartbeat: Arc<Heartbeat>,
    stall_after: Duration,
) -> Result<SocketAddr> {
    let state = OpsState { metrics, heartbeat, stall_after };
    let app = Router::new().route("/healthz", get(healthz)).route("/metrics", get(render_metrics)).with_state(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| IngestError::Config(format!("cannot listen on {listen} for metrics: {e}")))?;
    let bound = listener.local_addr().map_err(|e| IngestError::Config(format!("metrics listener: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    Ok(bound)
}

async fn healthz(State(state): State<OpsState>) -> (StatusCode, String) {
    let age = state.heartbeat.age();
    if age > state.stall_after {
        (StatusCode::SERVICE_UNAVAILABLE, format!("stalled: the worker loop last ran {}s ago\n", age.as_secs()))
    } else {
        (StatusCode::OK, "ok\n".into())
    }
}

async fn render_metrics(State(state): State<OpsState>) -> String {
    state.metrics.render()
}
