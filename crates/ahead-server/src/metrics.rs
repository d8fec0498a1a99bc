//! Prometheus metrics: counters and gauges in atomics, rendered as text at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Histogram buckets in seconds (time to first token, time per output token).
const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    total: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", c.load(Ordering::Relaxed));
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {total}");
    }
}

/// Everything `/metrics` reports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests by outcome label.
    outcomes: Mutex<Vec<(String, u64)>>,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens whose KV rows came from the prefix cache.
    pub cached_prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub target_forwards: AtomicU64,
    /// Drafted and accepted tokens per method.
    spec: Mutex<Vec<(String, u64, u64)>>,
    /// Per draft position: drafted and accepted.
    positions: Mutex<Vec<(u64, u64)>>,
    pub queue_depth: AtomicU64,
    pub running: AtomicU64,
    pub time_to_first_token: Histogram,
    pub time_per_output_token: Histogram,
}

impl Metrics {
    pub fn outcome(&self, label: &str) {
        if let Ok(mut v) = self.outcomes.lock() {
            match v.iter_mut().find(|(l, _)| l == label) {
                Some((_, n)) => *n += 1,
                None => v.push((label.to_string(), 1)),
            }
        }
    }

    pub fn speculation(&self, method: &str, drafted: usize, accepted: usize) {
        if let Ok(mut v) = self.spec.lock() {
            match v.iter_mut().find(|(m, _, _)| m == method) {
                Some((_, d, a)) => {
                    *d += drafted as u64;
                    *a += accepted as u64;
                }
                None => v.push((method.to_string(), drafted as u64, accepted as u64)),
            }
        }
    }

    pub fn positions(&self, by_position: &[(usize, usize)]) {
        if let Ok(mut v) = self.positions.lock() {
            if v.len() < by_position.len() {
                v.resize(by_position.len(), (0, 0));
            }
            for (slot, &(d, a)) in v.iter_mut().zip(by_position) {
                slot.0 += d as u64;
                slot.1 += a as u64;
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let _ = writeln!(
            out,
            "# HELP ahead_requests_total Requests by outcome.\n# TYPE ahead_requests_total counter"
        );
        if let Ok(v) = self.outcomes.lock() {
            for (l, n) in v.iter() {
                let _ = writeln!(out, "ahead_requests_total{{outcome=\"{l}\"}} {n}");
            }
        }
        counter(
            &mut out,
            "ahead_prompt_tokens_total",
            "Prompt tokens processed.",
            self.prompt_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ahead_prompt_cached_tokens_total",
            "Prompt tokens whose KV rows were reused from the prefix cache.",
            self.cached_prompt_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ahead_generated_tokens_total",
            "Tokens generated.",
            self.generated_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ahead_target_forwards_total",
            "Target forwards after prefill.",
            self.target_forwards.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP ahead_drafted_tokens_total Drafted tokens by method.\n# TYPE ahead_drafted_tokens_total counter");
        let mut accepted_lines = String::new();
        if let Ok(v) = self.spec.lock() {
            for (m, d, a) in v.iter() {
                let _ = writeln!(out, "ahead_drafted_tokens_total{{method=\"{m}\"}} {d}");
                let _ = writeln!(
                    accepted_lines,
                    "ahead_accepted_tokens_total{{method=\"{m}\"}} {a}"
                );
            }
        }
        let _ = writeln!(out, "# HELP ahead_accepted_tokens_total Accepted draft tokens by method.\n# TYPE ahead_accepted_tokens_total counter");
        out.push_str(&accepted_lines);
        let _ = writeln!(
            out,
            "# HELP ahead_position_drafted_total Steps that drafted at least this deep.\n# TYPE ahead_position_drafted_total counter"
        );
        let mut reached = String::new();
        if let Ok(v) = self.positions.lock() {
            for (i, (d, a)) in v.iter().enumerate() {
                let _ = writeln!(out, "ahead_position_drafted_total{{position=\"{}\"}} {d}", i + 1);
                let _ = writeln!(
                    reached,
                    "ahead_position_accepted_total{{position=\"{}\"}} {a}",
                    i + 1
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP ahead_position_accepted_total Steps whose accepted path reached this depth (acceptance per position = accepted / drafted).\n# TYPE ahead_position_accepted_total counter"
        );
        out.push_str(&reached);
        let generated = self.generated_tokens.load(Ordering::Relaxed) as f64;
        let forwards = self.target_forwards.load(Ordering::Relaxed).max(1) as f64;
        let _ = writeln!(
            out,
            "# HELP ahead_mean_accepted_length Generated tokens per target forward.\n# TYPE ahead_mean_accepted_length gauge\nahead_mean_accepted_length {}",
            generated / forwards
        );
        let _ = writeln!(
            out,
            "# HELP ahead_queue_depth Requests waiting for a slot.\n# TYPE ahead_queue_depth gauge\nahead_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ahead_running Requests generating now.\n# TYPE ahead_running gauge\nahead_running {}",
            self.running.load(Ordering::Relaxed)
        );
        self.time_to_first_token.render(
            "ahead_time_to_first_token_seconds",
            "Time to first token.",
            &mut out,
        );
        self.time_per_output_token.render(
            "ahead_time_per_output_token_seconds",
            "Decoding time per output token.",
            &mut out,
        );
        out
    }
}
