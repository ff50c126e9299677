//! Nothing a user does loses a run: a second writer is refused with the holder's PID, a
//! refused resume leaves the directory byte for byte as it was, Ctrl-C stops evaluation
//! within two seconds, temporary files of a crash are removed at the next start, a
//! misspelled macro and an unusable device are named, `hint infer` says what it truncates.
//! Every child process runs under a deadline: a hang fails the test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

mod common;
use common::{hint, tiny_args, wait_within, Reaped};

/// Flags that make evaluation last long enough to interrupt (minutes, undisturbed).
fn long_eval() -> Vec<String> {
    [
        "--gin.Builtin.eval_instances=100",
        "--gin.Run.eval_examples_per_task=100",
        "--gin.EvalConfig.batch_size=1",
        "--gin.EvalConfig.max_new_tokens=32",
    ]
    .map(String::from)
    .into()
}

/// Runs `hint ARGS` to completion within `limit`: (exit code, stdout, stderr).
fn run_within(args: &[String], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = hint()
        .args(args)
        .env("HINT_PROGRESS", "log")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines_of(&mut child);
    let stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let code = wait_within(&mut child, limit);
    let err: Vec<String> = stderr.try_iter().collect();
    (code, out.join().unwrap(), err.join("\n"))
}

/// Starts `hint ARGS` with log-line progress; returns it with its stderr lines.
fn spawn_logging(args: &[String]) -> (Reaped, Receiver<String>) {
    let mut child = Reaped::spawn(
        hint()
            .args(args)
            .env("HINT_PROGRESS", "log")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let lines = lines_of(&mut child);
    (child, lines)
}

/// Sends SIGINT once `child` starts evaluating; returns the lines it wrote after it
/// stopped, asserting it stopped within two seconds with exit code 130.
fn interrupt_evaluation(mut child: Reaped, lines: &Receiver<String>) -> Vec<String> {
    wait_for_line(lines, "evaluating `", Duration::from_secs(120));
    let asked = Instant::now();
    interrupt(&child);
    assert_eq!(wait_within(&mut child, Duration::from_secs(30)), Some(130));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    lines.try_iter().collect()
}

/// The child's stderr, line by line, from a reader thread.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Waits until a stderr line contains `needle`; returns the lines seen.
fn wait_for_line(lines: &Receiver<String>, needle: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(50)) {
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return seen;
            }
        }
    }
    panic!(
        "no line with `{needle}` within {limit:?}:\n{}",
        seen.join("\n")
    );
}

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let modified = entry.metadata().unwrap().modified().unwrap();
                files.insert(path.clone(), (std::fs::read(&path).unwrap(), modified));
            }
        }
    }
    files
}

fn train_args(args: Vec<String>) -> Vec<String> {
    std::iter::once("train".to_string()).chain(args).collect()
}

#[test]
fn a_second_writer_is_refused_with_the_holders_pid_and_the_first_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (mut first, _lines) = spawn_logging(&train_args(tiny_args(&dir, 100_000)));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("metrics.jsonl").exists() {
        assert!(Instant::now() < deadline, "the first run never trained");
        assert!(first.try_wait().unwrap().is_none(), "the first run ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let config = std::fs::read(dir.join("config.gin")).unwrap();

    let mut other = tiny_args(&dir, 7);
    other.push("--gin.LEARNING_RATE=0.5".into());
    let (code, _, stderr) = run_within(&train_args(other), Duration::from_secs(60));
    assert_eq!(code, Some(1), "{stderr}");
    let pid = format!("process {}", first.id());
    assert!(
        stderr.contains("is in use by") && stderr.contains(&pid),
        "`{pid}` missing:\n{stderr}"
    );
    assert_eq!(std::fs::read(dir.join("config.gin")).unwrap(), config);
    assert!(first.try_wait().unwrap().is_none(), "the first run stopped");

    // Ctrl-C: the first run saves its checkpoint and exits promptly, non-zero.
    let asked = Instant::now();
    interrupt(&first);
    let code = wait_within(&mut first, Duration::from_secs(30));
    assert_eq!(code, Some(130));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        !dir.join("eval_results.json").exists(),
        "an interrupted run wrote empty results"
    );
    // Its lock died with it.
    let (code, _, stderr) = run_within(&train_args(tiny_args(&dir, 3)), Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_refused_resume_changes_nothing_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (code, _, stderr) = run_within(&train_args(tiny_args(&dir, 3)), Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    let before = snapshot(&dir);
    let mut wider = tiny_args(&dir, 6);
    wider.push("--gin.T5Config.d_model=64".into());
    let (code, _, stderr) = run_within(&train_args(wider), Duration::from_secs(120));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("model expects"), "{stderr}");
    assert!(
        snapshot(&dir) == before,
        "the refused resume changed the model directory"
    );
    // The run is still whole: `hint eval` reads it.
    let (code, stdout, stderr) = run_within(
        &[
            "eval".to_string(),
            "--model_dir".into(),
            dir.display().to_string(),
            "--output_dir".into(),
            tmp.path().join("eval").display().to_string(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("| **mean** |"), "{stdout}");
}

#[test]
fn ctrl_c_stops_the_final_evaluation_and_hint_eval_within_two_seconds_writing_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut args = tiny_args(&dir, 3);
    args.extend(long_eval());
    let (train, lines) = spawn_logging(&train_args(args));
    interrupt_evaluation(train, &lines);
    assert!(!dir.join("eval_results.json").exists());
    assert!(!dir.join("eval_results.md").exists());
    assert!(
        dir.join("checkpoint_00000003").is_dir(),
        "the trained steps are kept"
    );

    let output = tmp.path().join("eval");
    let mut args = vec![
        "eval".to_string(),
        "--model_dir".into(),
        dir.display().to_string(),
        "--output_dir".into(),
        output.display().to_string(),
    ];
    args.extend(long_eval());
    let (eval, lines) = spawn_logging(&args);
    let said = interrupt_evaluation(eval, &lines);
    assert!(
        said.iter().any(|l| l.contains("no results were written")),
        "{said:?}"
    );
    assert!(
        !output.exists(),
        "an interrupted evaluation wrote {output:?}"
    );
}

#[test]
fn stale_temporary_files_are_removed_and_the_metrics_history_is_kept_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (code, _, stderr) = run_within(&train_args(tiny_args(&dir, 3)), Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    let history = std::fs::read(dir.join("metrics.jsonl")).unwrap();
    // What a crash or a full disk leaves: a half-written checkpoint folder and files
    // under temporary names.
    let stale_checkpoint = dir.join(".tmp-checkpoint_00000006");
    std::fs::create_dir(&stale_checkpoint).unwrap();
    std::fs::write(stale_checkpoint.join("model.safetensors"), vec![0u8; 4096]).unwrap();
    std::fs::write(dir.join(".tokenizer.json.tmp"), "half").unwrap();
    std::fs::write(dir.join("tokenizer.json.tmp"), "half").unwrap();

    let (code, _, stderr) = run_within(&train_args(tiny_args(&dir, 6)), Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stale_checkpoint.exists());
    assert!(!dir.join(".tokenizer.json.tmp").exists());
    assert!(!dir.join("tokenizer.json.tmp").exists());
    assert!(stderr.contains("removed temporary files"), "{stderr}");
    let resumed = std::fs::read(dir.join("metrics.jsonl")).unwrap();
    assert!(
        resumed.starts_with(&history) && resumed.len() > history.len(),
        "the history of steps 1-3 was rewritten"
    );
}

#[test]
fn a_misspelled_macro_and_a_binding_nothing_reads_are_warned() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = tiny_args(&tmp.path().join("run"), 2);
    args.push("--gin.TRAIN_STEP=5".into());
    // A scope no optimizer group has: the binding overrides nothing.
    args.push("--gin.t5x/hint.optim.Adafactor.decay_rate=0.5".into());
    let (code, _, stderr) = run_within(&train_args(args), Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("macro `TRAIN_STEP` is bound but nothing refers to it")
            && stderr.contains("did you mean `TRAIN_STEPS`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`t5x/hint.optim.Adafactor.decay_rate` is bound but nothing read"),
        "{stderr}"
    );
}

#[test]
fn an_unquoted_path_gets_the_quoting_hint() {
    let (code, _, stderr) = run_within(
        &["train".into(), "--gin.MODEL_DIR=/tmp/hint-unquoted".into()],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("needs quotes"), "{stderr}");
    assert!(!Path::new("/tmp/hint-unquoted").exists());
}

#[test]
fn a_cuda_device_libtorch_does_not_see_is_a_clean_error_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut args = tiny_args(&dir, 2);
    // cuda:99 is absent on a GPU machine too.
    args.push("--gin.Run.device=\"cuda:99\"".into());
    let (code, _, stderr) = run_within(&train_args(args), Duration::from_secs(60));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("hint.train.Run.device")
            && stderr.contains("device `cuda:99` is not available"),
        "{stderr}"
    );
    assert!(stderr.len() < 2_000, "more than a message:\n{stderr}");
    assert_eq!(
        stderr.matches("ERROR").count(),
        1,
        "printed once:\n{stderr}"
    );
    assert_eq!(stderr.matches("not available").count(), 1, "{stderr}");
    assert!(!dir.exists());
}

#[test]
fn hint_infer_says_what_it_truncates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (code, _, stderr) = run_within(&train_args(tiny_args(&dir, 3)), Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    let long = vec!["seven"; 500].join(" ");
    let (code, stdout, stderr) = run_within(
        &[
            "infer".into(),
            "--checkpoint".into(),
            dir.join("checkpoint_00000003").display().to_string(),
            "--instruction".into(),
            long.clone(),
            "--input".into(),
            long,
        ],
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stderr.contains("the instruction is") && stderr.contains("the model reads its first 32"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 of 1 inputs are longer than the 24 tokens"),
        "{stderr}"
    );
}
