//! The server's Prometheus metrics (`GET /metrics`, text format). Rates (adaptations and
//! tokens per second) are counters, from which Prometheus takes `rate()`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Every metric, registered in one registry. Cheap to clone (the handles are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by endpoint and status code.
    pub requests: IntCounterVec,
    /// Request latency by endpoint, from arrival to response.
    pub latency: HistogramVec,
    /// Input rows per batched forward pass.
    pub batch_rows: Histogram,
    /// Requests waiting for the model.
    pub queued: IntGauge,
    /// Adaptations found in the cache (memory).
    pub cache_hits: IntCounter,
    /// Adaptations not in memory (read back from the folder, or made).
    pub cache_misses: IntCounter,
    /// Adaptations evicted from memory.
    pub cache_evictions: IntCounter,
    /// Bytes of adaptations in memory.
    pub cache_bytes: IntGauge,
    /// Adaptations in memory.
    pub cache_entries: IntGauge,
    /// Adaptations made (the hypernetwork run once for an instruction).
    pub adaptations: IntCounter,
    /// Passes of the hypernetwork that made them (a batch's new tasks are made in one).
    pub adaptation_passes: IntCounter,
    /// Seconds to find a request's adaptation, by `cached` (`true`: in memory;
    /// `false`: read from the folder or made).
    pub adaptation_seconds: HistogramVec,
    /// Tokens generated.
    pub generated_tokens: IntCounter,
    /// Bytes of the model's weights reordered for oneDNN (`hint_model::packed_weight_bytes`),
    /// read at each render.
    pub packed_weights: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Fresh metrics.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("hint".into()), None).expect("a valid prefix");
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests by endpoint and status code"),
            &["endpoint", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("request_seconds", "Request latency by endpoint").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["endpoint"],
        )
        .expect("valid metric");
        let batch_rows = Histogram::with_opts(
            HistogramOpts::new("batch_rows", "Input rows per batched forward pass")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("valid metric");
        let adaptation_seconds = HistogramVec::new(
            HistogramOpts::new(
                "adaptation_seconds",
                "Seconds to find a request's adaptation (cached: in memory)",
            )
            .buckets(vec![
                1e-6, 1e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1, 1.0,
            ]),
            &["cached"],
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let metrics = Self {
            requests,
            latency,
            batch_rows,
            queued: gauge("queued_requests", "Requests waiting for the model"),
            cache_hits: counter("adaptation_cache_hits_total", "Adaptations found in memory"),
            cache_misses: counter(
                "adaptation_cache_misses_total",
                "Adaptations not in memory (read from the cache folder, or made)",
            ),
            cache_evictions: counter(
                "adaptation_cache_evictions_total",
                "Adaptations evicted from memory",
            ),
            cache_bytes: gauge("adaptation_cache_bytes", "Bytes of adaptations in memory"),
            cache_entries: gauge("adaptation_cache_entries", "Adaptations in memory"),
            adaptations: counter(
                "adaptations_total",
                "Adaptations made (the hypernetwork run once for an instruction)",
            ),
            adaptation_passes: counter(
                "adaptation_passes_total",
                "Passes of the hypernetwork that made the adaptations (new tasks of a batch share one)",
            ),
            generated_tokens: counter("generated_tokens_total", "Tokens generated"),
            packed_weights: gauge(
                "packed_weight_bytes",
                "Bytes of weights reordered once for the CPU's inference products",
            ),
            adaptation_seconds,
            registry,
        };
        for collector in [
            Box::new(metrics.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.latency.clone()),
            Box::new(metrics.batch_rows.clone()),
            Box::new(metrics.queued.clone()),
            Box::new(metrics.cache_hits.clone()),
            Box::new(metrics.cache_misses.clone()),
            Box::new(metrics.cache_evictions.clone()),
            Box::new(metrics.cache_bytes.clone()),
            Box::new(metrics.cache_entries.clone()),
            Box::new(metrics.adaptations.clone()),
            Box::new(metrics.adaptation_passes.clone()),
            Box::new(metrics.generated_tokens.clone()),
            Box::new(metrics.packed_weights.clone()),
            Box::new(metrics.adaptation_seconds.clone()),
        ] {
            metrics
                .registry
                .register(collector)
                .expect("each metric registered once");
        }
        metrics
    }

    /// Everything, in Prometheus' text format.
    pub fn render(&self) -> String {
        self.packed_weights
            .set(i64::try_from(hint_model::packed_weight_bytes()).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
