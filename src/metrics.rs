//! Prometheus metrics: requests by interaction, resource type and status,
//! latency histograms, database pool use, and rate-limit refusals. Label
//! values are interaction names, resource types, status codes and role names
//! only: never ids or search values.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process-wide metrics registry and its series.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    audit: IntCounterVec,
    tool_calls: IntCounterVec,
    tool_latency: HistogramVec,
    throttled: IntCounterVec,
}

/// Latency buckets in seconds (1 ms to 10 s).
const LATENCY_BUCKETS_S: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new_custom(Some("vesta".into()), None).unwrap_or_default();
    let requests = IntCounterVec::new(
        Opts::new(
            "fhir_requests_total",
            "FHIR requests by interaction, resource type and HTTP status",
        ),
        &["interaction", "resource_type", "status"],
    )
    .expect("constant metric definition");
    let latency = HistogramVec::new(
        HistogramOpts::new(
            "fhir_request_duration_seconds",
            "FHIR request latency by interaction",
        )
        .buckets(LATENCY_BUCKETS_S.to_vec()),
        &["interaction"],
    )
    .expect("constant metric definition");
    let pool = IntGaugeVec::new(
        Opts::new(
            "db_pool_connections",
            "Database pool connections by pool and state",
        ),
        &["pool", "state"],
    )
    .expect("constant metric definition");
    let audit = IntCounterVec::new(
        Opts::new(
            "audit_records_total",
            "AuditEvents appended to the audit trail, by result (ok or failed)",
        ),
        &["result"],
    )
    .expect("constant metric definition");
    let _ = registry.register(Box::new(audit.clone()));
    let tool_calls = IntCounterVec::new(
        Opts::new(
            "mcp_tool_calls_total",
            "MCP tool calls by tool and result (ok or error)",
        ),
        &["tool", "result"],
    )
    .expect("constant metric definition");
    let tool_latency = HistogramVec::new(
        HistogramOpts::new(
            "mcp_tool_call_duration_seconds",
            "MCP tool call latency by tool",
        )
        .buckets(LATENCY_BUCKETS_S.to_vec()),
        &["tool"],
    )
    .expect("constant metric definition");
    let _ = registry.register(Box::new(tool_calls.clone()));
    let _ = registry.register(Box::new(tool_latency.clone()));
    let throttled = IntCounterVec::new(
        Opts::new(
            "rate_limited_total",
            "Requests refused with 429 by the rate limiter, by budget class (role, user or backend)",
        ),
        &["role"],
    )
    .expect("constant metric definition");
    let _ = registry.register(Box::new(throttled.clone()));
    let _ = registry.register(Box::new(requests.clone()));
    let _ = registry.register(Box::new(latency.clone()));
    let _ = registry.register(Box::new(pool.clone()));
    Metrics {
        registry,
        requests,
        latency,
        pool,
        audit,
        tool_calls,
        tool_latency,
        throttled,
    }
});

/// Records one MCP tool call; `tool` is a catalog name, never an argument.
pub fn record_tool_call(tool: &str, failed: bool, seconds: f64) {
    METRICS
        .tool_calls
        .with_label_values(&[tool, if failed { "error" } else { "ok" }])
        .inc();
    METRICS
        .tool_latency
        .with_label_values(&[tool])
        .observe(seconds);
}

/// Counts `n` AuditEvents appended (or lost to a failed append).
pub fn record_audit_writes(n: usize, ok: bool) {
    METRICS
        .audit
        .with_label_values(&[if ok { "ok" } else { "failed" }])
        .inc_by(n as u64);
}

/// Records one FHIR request. `label` is the interaction label
/// (`"read Patient"`, `"search-type Observation"`, `"capabilities"`).
pub fn record_request(label: &str, status: u16, seconds: f64) {
    let (interaction, resource_type) = label.split_once(' ').unwrap_or((label, ""));
    let m = &*METRICS;
    m.requests
        .with_label_values(&[interaction, resource_type, &status.to_string()])
        .inc();
    m.latency.with_label_values(&[interaction]).observe(seconds);
}

/// Counts one request refused by the rate limiter. `role` is the budget
/// class: a role name from `smart-config/roles.toml`, `user` or `backend`.
pub fn record_throttled(role: &str) {
    METRICS.throttled.with_label_values(&[role]).inc();
}

/// Sets the pool gauges: `(pool name, connections open, idle)`.
pub fn set_pool(pools: &[(&str, u32, usize)]) {
    for (name, size, idle) in pools {
        let idle = *idle as i64;
        METRICS.pool.with_label_values(&[name, "idle"]).set(idle);
        METRICS
            .pool
            .with_label_values(&[name, "in_use"])
            .set(i64::from(*size) - idle);
    }
}

/// Everything registered, in the Prometheus text format.
pub fn render() -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&METRICS.registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
