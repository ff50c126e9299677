//! `hint serve` on an ephemeral port of 127.0.0.1 with a tiny trained model: every
//! endpoint, every error a client can make (4xx naming the field), the adaptation cache's
//! byte bound and its folder, the same outputs alone and inside a mixed batch, a plain
//! Hugging Face T5 directory serving the concatenation baseline, and SIGTERM draining the
//! requests in flight. Every server runs under a deadline and is
//! killed when its test ends, however it ends.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{export_hf, hint, tiny_args, wait_within, Reaped};

/// One tiny trained model for every test of this file.
fn model() -> &'static Path {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &MODEL
        .get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("run");
            let status = hint()
                .arg("train")
                .args(tiny_args(&dir, 6))
                .arg("--gin.Run.eval_sets=()")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            (tmp, dir)
        })
        .1
}

struct Served {
    child: Reaped,
    url: String,
    client: reqwest::blocking::Client,
}

impl Served {
    fn start(extra: &[&str]) -> Self {
        Self::start_on(model(), extra)
    }

    fn start_on(model_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Reaped::spawn(
            hint()
                .args(["serve", "--model_dir"])
                .arg(model_dir)
                .args(["--bind", "127.0.0.1:0"])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address: {line:?}"))
            .to_string();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self { child, url, client }
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string())
    }

    /// `POST /v1/generate` of every body at once (one thread each), answers in order.
    fn generate_together(&self, bodies: &[Value]) -> Vec<(u16, Value)> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = bodies
                .iter()
                .map(|body| scope.spawn(|| self.post("/v1/generate", body)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    fn post_raw(&self, path: &str, body: String) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn health(&self) -> Value {
        self.client
            .get(format!("{}/health", self.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// A metric's value (the first sample of that name).
    fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }
}

const SORT: &str = "Sort the numbers in ascending order.";
const EVEN: &str = "Keep the even numbers.";

fn assert_error(answer: (u16, Value), status: u16, field: Option<&str>, words: &str) {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    let error = &body["error"];
    assert_eq!(error["status"], status, "{body}");
    assert_eq!(error["field"].as_str(), field, "{body}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(words),
        "`{message}` does not say `{words}`"
    );
}

#[test]
fn every_endpoint_answers_and_ids_are_content_hashes() {
    let served = Served::start(&[]);
    let (status, first) = served.post("/v1/adaptations", &json!({ "instruction": SORT }));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["cached"], false);
    assert!(first["tokens"].as_u64().unwrap() > 0 && first["bytes"].as_u64().unwrap() > 0);
    let (_, again) = served.post("/v1/adaptations", &json!({ "instruction": SORT }));
    assert_eq!(
        again["id"], first["id"],
        "the same instruction, the same id"
    );
    assert_eq!(again["cached"], true);
    let (status, other) = served.post(
        "/v1/adaptations",
        &json!({ "instruction": "Sort.", "demonstrations": [{ "input": "3 1", "output": "1 3" }] }),
    );
    assert_eq!(status, 200, "{other}");
    let (_, bare) = served.post("/v1/adaptations", &json!({ "instruction": "Sort." }));
    assert_ne!(other["id"], bare["id"], "demonstrations change the task");

    let inputs = json!(["3 1 2", "9 7 8", "5 4"]);
    let (status, by_text) = served.post(
        "/v1/generate",
        &json!({ "instruction": SORT, "inputs": inputs, "max_new_tokens": 6 }),
    );
    assert_eq!(status, 200, "{by_text}");
    assert_eq!(by_text["adaptation_id"], first["id"]);
    let outputs = by_text["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 3);
    for output in outputs {
        let tokens = output["tokens"].as_array().unwrap();
        assert!((1..=6).contains(&tokens.len()), "{output}");
        assert!(output["score"].as_f64().unwrap() <= 0.0);
        assert!(output["text"].is_string());
    }
    let (_, by_id) = served.post(
        "/v1/generate",
        &json!({ "adaptation_id": first["id"], "inputs": inputs, "max_new_tokens": 6 }),
    );
    assert_eq!(by_id["outputs"], by_text["outputs"]);
    // Beams, sampling (seeded: the same twice), and a floor on the length.
    let (status, beams) = served.post(
        "/v1/generate",
        &json!({ "instruction": SORT, "inputs": ["3 1 2"], "num_beams": 3, "max_new_tokens": 5 }),
    );
    assert_eq!(status, 200, "{beams}");
    let sample = json!({ "instruction": SORT, "inputs": ["3 1 2"], "temperature": 1.5, "top_k": 20, "seed": 4, "max_new_tokens": 5 });
    let (_, a) = served.post("/v1/generate", &sample);
    let (_, b) = served.post("/v1/generate", &sample);
    assert_eq!(a["outputs"], b["outputs"]);
    let (_, long) = served.post(
        "/v1/generate",
        &json!({ "instruction": SORT, "inputs": ["3 1 2"], "min_new_tokens": 5, "max_new_tokens": 5 }),
    );
    assert_eq!(
        long["outputs"][0]["tokens"].as_array().unwrap().len(),
        5,
        "{long}"
    );

    let (status, scored) = served.post(
        "/v1/score",
        &json!({ "instruction": EVEN, "inputs": ["4", "7"], "choices": ["yes", "no", "maybe"] }),
    );
    assert_eq!(status, 200, "{scored}");
    let scores = scored["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 2);
    for (row, best) in scores.iter().zip(scored["best"].as_array().unwrap()) {
        let row: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(row.len(), 3);
        let argmax = (0..3).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap();
        assert_eq!(best.as_u64().unwrap() as usize, argmax);
    }
    let (status, per_input) = served.post(
        "/v1/score",
        &json!({ "instruction": EVEN, "inputs": ["4", "7"], "choices": [["yes", "no"], ["no"]] }),
    );
    assert_eq!(status, 200, "{per_input}");
    assert_eq!(per_input["scores"][1].as_array().unwrap().len(), 1);

    let health = served.health();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["mode"], "hint");
    let metrics = served.metrics();
    for name in [
        "hint_requests_total{endpoint=\"/v1/generate\",status=\"200\"}",
        "hint_request_seconds_bucket",
        "hint_batch_rows_bucket",
        "hint_adaptation_cache_hits_total",
        "hint_adaptation_cache_misses_total",
        "hint_adaptation_cache_evictions_total",
        "hint_adaptation_cache_bytes",
        "hint_adaptations_total",
        "hint_adaptation_passes_total",
        "hint_generated_tokens_total",
        "hint_packed_weight_bytes",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    // SORT, "Sort." with and without a demonstration, EVEN: each adapted once.
    assert_eq!(
        served.metric("hint_adaptations_total"),
        4.0,
        "each task adapted once"
    );
}

#[test]
fn every_client_error_is_a_4xx_naming_the_field() {
    let served = Served::start(&[
        "--max_inputs",
        "4",
        "--max_new_tokens",
        "16",
        "--max_body_bytes",
        "2000",
    ]);
    let generate = |body: Value| served.post("/v1/generate", &body);
    // Cut short: the value of `instruction` never comes.
    assert_error(
        served.post_raw("/v1/generate", "{\"instruction\": ".into()),
        400,
        Some("instruction"),
        "EOF",
    );
    assert_error(
        generate(json!({ "instruction": SORT, "inputs": [3] })),
        400,
        Some("inputs[0]"),
        "invalid type",
    );
    assert_error(
        generate(json!({ "instruction": SORT, "inputs": ["1"], "max_new_tokens": "many" })),
        400,
        Some("max_new_tokens"),
        "invalid type",
    );
    assert_error(
        generate(json!({ "instruction": SORT, "inputs": ["1"], "colour": "blue" })),
        400,
        Some("colour"),
        "unknown field `colour`",
    );
    assert_error(
        generate(json!({ "inputs": ["1"] })),
        400,
        Some("instruction"),
        "missing",
    );
    assert_error(
        generate(
            json!({ "instruction": SORT, "adaptation_id": "0123456789abcdef0123456789abcdef", "inputs": ["1"] }),
        ),
        400,
        Some("adaptation_id"),
        "not both",
    );
    assert_error(
        generate(json!({ "adaptation_id": "0123456789abcdef0123456789abcdef", "inputs": ["1"] })),
        404,
        Some("adaptation_id"),
        "no adaptation",
    );
    assert_error(
        generate(json!({ "adaptation_id": "not-an-id", "inputs": ["1"] })),
        400,
        Some("adaptation_id"),
        "32 hex digits",
    );
    assert_error(
        generate(json!({ "instruction": SORT, "inputs": [] })),
        400,
        Some("inputs"),
        "empty",
    );
    assert_error(
        generate(json!({ "instruction": SORT, "inputs": ["1", "2", "3", "4", "5"] })),
        400,
        Some("inputs"),
        "at most 4",
    );
    let long_input =
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30";
    assert_error(
        generate(json!({ "instruction": SORT, "inputs": ["1", long_input] })),
        400,
        Some("inputs[1]"),
        "the model reads at most",
    );
    let long_instruction = "Sort the numbers. ".repeat(40);
    assert_error(
        generate(json!({ "instruction": long_instruction, "inputs": ["1"] })),
        400,
        Some("instruction"),
        "refused, not cut",
    );
    assert_error(
        generate(json!({ "instruction": SORT, "inputs": ["1"], "max_new_tokens": 17 })),
        400,
        Some("max_new_tokens"),
        "between 1 and 16",
    );
    assert_error(
        generate(
            json!({ "instruction": SORT, "inputs": ["1"], "num_beams": 2, "temperature": 0.7 }),
        ),
        400,
        Some("num_beams"),
        "does not sample",
    );
    assert_error(
        generate(json!({ "instruction": SORT, "inputs": ["1"], "top_p": 1.5 })),
        400,
        Some("top_p"),
        "at most 1",
    );
    assert_error(
        served.post(
            "/v1/score",
            &json!({ "instruction": EVEN, "inputs": ["4", "7"], "choices": [["yes"]] }),
        ),
        400,
        Some("choices"),
        "1 lists of choices for 2 inputs",
    );
    assert_error(
        served.post(
            "/v1/score",
            &json!({ "instruction": EVEN, "inputs": ["4"], "choices": [] }),
        ),
        400,
        Some("choices"),
        "0 choices",
    );
    let huge = json!({ "instruction": SORT, "inputs": vec!["1"; 1000] }).to_string();
    let (status, body) = served.post_raw("/v1/generate", huge);
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("larger than 2000 bytes"));
    // The server is still well after all of these.
    let (status, _) = generate(json!({ "instruction": SORT, "inputs": ["1"] }));
    assert_eq!(status, 200);
}

#[test]
fn the_cache_stays_within_its_byte_bound_and_its_folder_makes_a_restart_warm() {
    // One adaptation's size, from a server with room.
    let probe = Served::start(&[]);
    let (_, made) = probe.post("/v1/adaptations", &json!({ "instruction": SORT }));
    let one = made["bytes"].as_u64().unwrap();
    drop(probe);
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("adaptations");
    let bound = (one * 5 / 2).to_string();
    let instructions: Vec<String> = (0..6)
        .map(|i| format!("Task number {i}: sort the numbers."))
        .collect();
    let mut ids = Vec::new();
    {
        let served = Served::start(&[
            "--cache_bytes",
            &bound,
            "--cache_dir",
            folder.to_str().unwrap(),
        ]);
        for instruction in &instructions {
            let (status, made) =
                served.post("/v1/adaptations", &json!({ "instruction": instruction }));
            assert_eq!(status, 200, "{made}");
            ids.push(made["id"].as_str().unwrap().to_string());
            assert!(served.metric("hint_adaptation_cache_bytes") <= (one * 5 / 2) as f64);
        }
        assert_eq!(served.metric("hint_adaptation_cache_entries"), 2.0);
        assert_eq!(served.metric("hint_adaptation_cache_evictions_total"), 4.0);
        // An evicted adaptation comes back from the folder.
        let (status, answer) = served.post(
            "/v1/generate",
            &json!({ "adaptation_id": ids[0], "inputs": ["3 1"] }),
        );
        assert_eq!(status, 200, "{answer}");
        assert!(served.metric("hint_adaptation_cache_bytes") <= (one * 5 / 2) as f64);
    }
    // Without the folder an evicted id is gone…
    {
        let served = Served::start(&["--cache_bytes", &bound]);
        for instruction in &instructions[..3] {
            served.post("/v1/adaptations", &json!({ "instruction": instruction }));
        }
        let (status, _) = served.post(
            "/v1/generate",
            &json!({ "adaptation_id": ids[0], "inputs": ["3 1"] }),
        );
        assert_eq!(status, 404);
    }
    // …with it, a restarted server knows every id without running the hypernetwork.
    let served = Served::start(&["--cache_dir", folder.to_str().unwrap()]);
    for id in &ids {
        let (status, answer) = served.post(
            "/v1/generate",
            &json!({ "adaptation_id": id, "inputs": ["3 1"] }),
        );
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(served.metric("hint_adaptations_total"), 0.0);
}

/// Two answers to the same generation request: the same tokens, scores within 1e-4.
fn assert_same_outputs(a: &Value, b: &Value) {
    let (a, b) = (
        a["outputs"].as_array().unwrap(),
        b["outputs"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(b) {
        assert_eq!(a["tokens"], b["tokens"]);
        assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-4);
    }
}

#[test]
fn a_request_alone_and_inside_a_mixed_batch_gets_the_same_outputs() {
    let served = Served::start(&["--batch_window_ms", "300"]);
    let request = json!({ "instruction": SORT, "inputs": ["3 1 2", "8 2"], "max_new_tokens": 6 });
    let (_, alone) = served.post("/v1/generate", &request);
    let before = served.metric("hint_batch_rows_sum");
    // The same request among others of other tasks and lengths, sent together.
    let others = [
        json!({ "instruction": EVEN, "inputs": ["4 7 10", "1"], "max_new_tokens": 6 }),
        json!({ "instruction": "Reverse the list.", "inputs": ["1 2 3 4 5 6"], "max_new_tokens": 6 }),
        json!({ "instruction": SORT, "inputs": ["5 5 1"], "max_new_tokens": 6 }),
    ];
    let bodies: Vec<Value> = std::iter::once(&request).chain(&others).cloned().collect();
    let answers = served.generate_together(&bodies);
    let mixed = &answers[0].1;
    assert_same_outputs(&alone, mixed);
    // The four requests (6 rows) went through together.
    let rows = served.metric("hint_batch_rows_sum") - before;
    assert_eq!(rows, 6.0);
    assert!(served
        .metrics()
        .contains("hint_batch_rows_bucket{le=\"8\"}"));
    let count = served
        .metrics()
        .lines()
        .find(|l| l.starts_with("hint_batch_rows_count"))
        .and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .unwrap();
    // One batch for the four (the first request made one of its own).
    assert_eq!(count, 2.0, "{}", served.metrics());
}

/// New tasks whose requests arrive together are adapted together, one pass of the
/// hypernetwork for instructions of similar lengths (a much longer one gets its own), and
/// answer as each task's request does alone on a fresh server (same outputs, same
/// adaptation id, tokens and bytes).
#[test]
fn new_tasks_of_one_batch_are_adapted_together_and_answer_as_alone() {
    let requests = [
        json!({ "instruction": "Add one.", "inputs": ["3 1 2", "8 2"], "max_new_tokens": 6 }),
        json!({ "instruction": "Add two.", "inputs": ["4 7 10"], "max_new_tokens": 6 }),
        json!({ "instruction": "Add six.", "inputs": ["1 2"], "max_new_tokens": 6 }),
        json!({ "instruction": SORT, "inputs": ["5 3"], "max_new_tokens": 6 }),
    ];
    let together = Served::start(&["--batch_window_ms", "300"]);
    let answers = together.generate_together(&requests);
    assert_eq!(together.metric("hint_adaptations_total"), 4.0);
    assert_eq!(
        together.metric("hint_adaptation_passes_total"),
        2.0,
        "{}",
        together.metrics()
    );
    let alone = Served::start(&[]);
    for (request, (status, mixed)) in requests.iter().zip(&answers) {
        assert_eq!(*status, 200, "{mixed}");
        let (_, single) = alone.post("/v1/generate", request);
        assert_same_outputs(&single, mixed);
        let adaptation = json!({ "instruction": request["instruction"] });
        let (_, made_together) = together.post("/v1/adaptations", &adaptation);
        let (_, made_alone) = alone.post("/v1/adaptations", &adaptation);
        for field in ["id", "tokens", "bytes"] {
            assert_eq!(made_together[field], made_alone[field], "{field}");
        }
    }
    assert_eq!(alone.metric("hint_adaptation_passes_total"), 4.0);
}

#[test]
fn sigterm_drains_the_requests_in_flight_and_exits_cleanly() {
    let mut served = Served::start(&["--batch_window_ms", "200"]);
    let url = served.url.clone();
    let client = served.client.clone();
    let in_flight = std::thread::spawn(move || {
        client
            .post(format!("{url}/v1/generate"))
            .json(&json!({ "instruction": SORT, "inputs": vec!["3 1 2"; 8], "min_new_tokens": 16, "max_new_tokens": 16 }))
            .send()
            .map(|r| r.status().as_u16())
    });
    // The request is queued (the window holds it 200 ms) when the signal comes.
    std::thread::sleep(Duration::from_millis(100));
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let answered = in_flight.join().unwrap();
    assert_eq!(answered.unwrap(), 200, "the request in flight is answered");
    let started = Instant::now();
    let code = wait_within(&mut served.child, Duration::from_secs(20));
    assert_eq!(code, Some(0));
    assert!(started.elapsed() < Duration::from_secs(20));
    // Nothing listens any more.
    assert!(served
        .client
        .get(format!("{}/health", served.url))
        .send()
        .is_err());
}

/// A plain Hugging Face T5 directory (`hint export --hf` of a concatenation run) serves the
/// concatenation baseline, answering exactly as the run it came from; what it cannot be
/// loaded as is refused by name.
#[test]
fn a_hugging_face_t5_directory_serves_the_concatenation_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("concat");
    let status = hint()
        .arg("train")
        .args(tiny_args(&run, 3))
        .args([
            "--gin.Run.eval_sets=()",
            "--gin.Run.instruction_mode=\"concat\"",
            "--gin.HyperConfig.use_instructions=False",
            "--gin.HyperConfig.use_adapter=False",
            "--gin.HyperConfig.use_prefix=False",
            "--gin.HyperConfig.use_lora=False",
            "--gin.HyperConfig.use_prompt=False",
            "--gin.HyperConfig.use_fusion_in_decoder=False",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let t5 = tmp.path().join("t5");
    export_hf(&run, &t5);
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(t5.join(file).is_file(), "no {file}");
    }
    assert!(!t5.join("config.gin").exists());

    let generate =
        json!({ "instruction": SORT, "inputs": ["3 1 2", "8 2 5 1"], "max_new_tokens": 6 });
    let score = json!({ "instruction": EVEN, "inputs": ["4 7 10"], "choices": ["4 10", "7"] });
    let answers = |served: &Served| {
        let (status, generated) = served.post("/v1/generate", &generate);
        assert_eq!(status, 200, "{generated}");
        let (status, scored) = served.post("/v1/score", &score);
        assert_eq!(status, 200, "{scored}");
        (generated, scored)
    };
    let from_run = answers(&Served::start_on(&run, &[]));
    // The run's lengths (builtin.gin's), not a plain T5's default.
    let served = Served::start_on(&t5, &["--gin.Run.lengths=(24, 32, 16)"]);
    let health = served.health();
    assert_eq!(health["mode"], "concatenation", "{health}");
    let from_t5 = answers(&served);
    drop(served);
    assert_eq!(from_run.0["outputs"].as_array().map(Vec::len), Some(2));
    assert_eq!(from_t5.0["outputs"].as_array().map(Vec::len), Some(2));
    for (a, b) in from_run.0["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(from_t5.0["outputs"].as_array().unwrap())
    {
        assert_eq!(a["tokens"], b["tokens"]);
        assert_eq!(a["text"], b["text"]);
        assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-5);
    }
    assert_eq!(from_run.1["best"], from_t5.1["best"]);
    let scores = |v: &Value| -> Vec<f64> {
        v["scores"][0]
            .as_array()
            .unwrap_or_else(|| panic!("no scores in {v}"))
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect()
    };
    assert_eq!(scores(&from_run.1).len(), 2);
    assert_eq!(scores(&from_t5.1).len(), 2);
    for (a, b) in scores(&from_run.1).iter().zip(scores(&from_t5.1)) {
        assert!((a - b).abs() < 1e-5, "{a} against {b}");
    }

    // Refusals, each naming what is wrong, before anything listens.
    let refused = |dir: &Path, extra: &[&str]| -> String {
        let out = hint()
            .args(["serve", "--bind", "127.0.0.1:0", "--model_dir"])
            .arg(dir)
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = refused(&t5, &["--checkpoint", "checkpoint_3"]);
    assert!(stderr.contains("no checkpoints"), "{stderr}");
    std::fs::remove_file(t5.join("tokenizer.json")).unwrap();
    let stderr = refused(&t5, &[]);
    assert!(stderr.contains("tokenizer.json"), "{stderr}");
    let stderr = refused(tmp.path(), &[]);
    assert!(stderr.contains("config.json"), "{stderr}");
}
