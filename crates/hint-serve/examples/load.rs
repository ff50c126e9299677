//! A bounded load generator for `hint serve` (localhost only): `clients` threads each send
//! `requests` generation requests, one input each, cycling over `tasks` instructions of
//! about `instruction_words` words, with inputs of about `input_words` words and exactly
//! `new_tokens` new tokens (min = max), after an unmeasured warm-up round of one request
//! per client. Prints requests/s, latency percentiles and errors, then what the server's
//! metrics say of its adaptation cache and batches.
//!
//!     cargo run --release -p hint-serve --example load -- URL [tasks] [clients] [requests] \
//!         [instruction_words] [input_words] [new_tokens]
// A report tool: its output is the point.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use serde_json::json;

fn words(seed: usize, count: usize) -> String {
    const VOCABULARY: [&str; 24] = [
        "sort", "the", "numbers", "list", "reverse", "each", "word", "count", "letters", "keep",
        "even", "odd", "values", "first", "last", "items", "in", "order", "and", "then", "add",
        "one", "to", "output",
    ];
    (0..count)
        .map(|i| VOCABULARY[(seed * 7 + i * 13 + i * i) % VOCABULARY.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    assert!(
        url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost"),
        "the load generator only targets this machine (127.0.0.1 or localhost)"
    );
    let number = |i: usize, default: usize| {
        args.get(i)
            .map(|a| a.parse().expect("a whole number"))
            .unwrap_or(default)
    };
    let (tasks, clients, requests) = (number(2, 50), number(3, 20), number(4, 10));
    let (instruction_words, input_words, new_tokens) =
        (number(5, 200), number(6, 48), number(7, 16));
    let instructions: Vec<String> = (0..tasks)
        .map(|t| format!("Task {t}: {}", words(t, instruction_words)))
        .collect();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("a client");
    // Every task adapted once before the clock starts (its warm path is measured).
    for instruction in &instructions {
        let response = client
            .post(format!("{url}/v1/adaptations"))
            .json(&json!({ "instruction": instruction }))
            .send()
            .expect("the server answers");
        if !response.status().is_success() {
            eprintln!(
                "adapting to task instructions failed: {}",
                response.text().unwrap_or_default()
            );
            std::process::exit(1);
        }
    }
    // One request per client first, unmeasured: a server's first batches pay one-off
    // costs (weights reordered for the CPU's kernels, kernels compiled for new shapes,
    // the allocator growing) that say nothing of its steady rate; reported apart.
    let (warm_up, warm_up_seconds) = round(
        &client,
        &url,
        &instructions,
        &Round {
            clients,
            requests: 1,
            first_input: 1_000_000,
            new_tokens,
            input_words,
        },
    );
    println!(
        "warm-up: {} requests in {warm_up_seconds:.1} s, {} errors (not counted below)",
        warm_up.len(),
        warm_up.iter().filter(|(_, ok)| !ok).count()
    );
    let (results, seconds) = round(
        &client,
        &url,
        &instructions,
        &Round {
            clients,
            requests,
            first_input: 0,
            new_tokens,
            input_words,
        },
    );
    let mut latencies: Vec<f64> = results.iter().map(|(d, _)| d.as_secs_f64()).collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let errors = results.iter().filter(|(_, ok)| !ok).count();
    println!(
        "{} requests in {seconds:.1} s: {:.2} requests/s, latency p50 {:.0} ms, p99 {:.0} ms, {errors} errors",
        results.len(),
        results.len() as f64 / seconds,
        percentile(0.5) * 1e3,
        percentile(0.99) * 1e3
    );
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let hits = value("hint_adaptation_seconds_count{cached=\"true\"}");
    let hit_seconds = value("hint_adaptation_seconds_sum{cached=\"true\"}");
    let made = value("hint_adaptation_seconds_count{cached=\"false\"}");
    let made_seconds = value("hint_adaptation_seconds_sum{cached=\"false\"}");
    println!(
        "adaptations: {made} made ({:.1} ms each), {hits} found cached ({:.3} ms each); mean batch {:.1} rows",
        made_seconds / made * 1e3,
        hit_seconds / hits * 1e3,
        value("hint_batch_rows_sum") / value("hint_batch_rows_count"),
    );
}

/// One round of load: how many clients, each sending how many requests.
struct Round {
    clients: usize,
    requests: usize,
    /// Seed of the first input's words (rounds use different inputs).
    first_input: usize,
    new_tokens: usize,
    input_words: usize,
}

/// Runs a round; each request's latency and success, and the round's seconds.
fn round(
    client: &reqwest::blocking::Client,
    url: &str,
    instructions: &[String],
    round: &Round,
) -> (Vec<(Duration, bool)>, f64) {
    let started = Instant::now();
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..round.clients)
            .map(|c| {
                scope.spawn(move || {
                    (0..round.requests)
                        .map(|r| {
                            let task = (c * round.requests + r) % instructions.len();
                            let seed = round.first_input + c * 1000 + r;
                            let body = json!({
                                "instruction": instructions[task],
                                "inputs": [words(seed, round.input_words)],
                                "max_new_tokens": round.new_tokens,
                                "min_new_tokens": round.new_tokens,
                            });
                            let sent = Instant::now();
                            let ok = client
                                .post(format!("{url}/v1/generate"))
                                .json(&body)
                                .send()
                                .map(|r| r.status().is_success())
                                .unwrap_or(false);
                            (sent.elapsed(), ok)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a client"))
            .collect()
    });
    (results, started.elapsed().as_secs_f64())
}
