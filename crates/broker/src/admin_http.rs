//! The HTTP admin listener: liveness, readiness and Prometheus metrics for Kubernetes probes.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::broker::Broker;

/// What `/` answers, so that someone who opens the admin port in a browser or with curl
/// learns what it serves.
const INDEX: &str = "Strom admin listener\n\
/healthz  liveness: 200 while the process runs\n\
/readyz   readiness: 200 once start-up and recovery are done, 503 while starting or stopping\n\
/metrics  Prometheus metrics (text format 0.0.4)\n";

#[derive(Clone)]
struct AdminState {
    broker: Arc<Broker>,
    metrics: Option<PrometheusHandle>,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(|| async { INDEX }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { broker, metrics });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, String) {
    if s.broker.is_ready() {
        return (StatusCode::OK, "ready\n".to_string());
    }
    // Which metadata publisher holds readiness back, if one does: what an operator needs.
    let mut body = "not ready\n".to_string();
    for (publisher, reason) in s.broker.loader.failing() {
        body.push_str(&format!(
            "metadata publisher {publisher} failed: {reason}\n"
        ));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

async fn metrics_text(
    State(s): State<AdminState>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let body = match &s.metrics {
        Some(h) => {
            h.run_upkeep();
            let mut text = h.render();
            text.push_str(&crate::metrics::collect::render(&s.broker));
            text
        }
        None => String::new(),
    };
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        body,
    )
}
