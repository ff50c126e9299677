//! `hint export --peft`: the generated LoRA as a PEFT adapter (names, shapes, ranks and
//! alpha as PEFT reads them), the base T5 beside it, configurations PEFT cannot express
//! refused by name, and — with a Python that has transformers and PEFT
//! (`HINT_PEFT_PYTHON`, which `cargo xtask` sets to its environment's) —
//! `PeftModel.from_pretrained` reproducing HINT's logits within 1e-4. `hint export --hf`:
//! the run's T5 alone, as a Hugging Face directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{export_hf, hint, tiny_args};

fn train(dir: &Path, extra: &[&str]) {
    let status = hint()
        .arg("train")
        .args(tiny_args(dir, 4))
        .arg("--gin.Run.eval_sets=()")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn export(model: &Path, output: &Path) -> (bool, String) {
    let out = hint()
        .args(["export", "--peft", "--model_dir"])
        .arg(model)
        .args(["--instruction", "Sort the numbers.", "--output"])
        .arg(output)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LORA: [&str; 6] = [
    "--gin.HyperConfig.use_adapter=False",
    "--gin.HyperConfig.use_prefix=False",
    "--gin.HyperConfig.use_fusion_in_decoder=False",
    "--gin.HyperConfig.use_lora=True",
    "--gin.HyperConfig.lora_ranks=(4, None, 2, 4)",
    "--gin.HyperConfig.lora_alpha=8.0",
];

const IA3: [&str; 4] = [
    "--gin.HyperConfig.use_adapter=False",
    "--gin.HyperConfig.use_prefix=False",
    "--gin.HyperConfig.use_fusion_in_decoder=False",
    "--gin.HyperConfig.use_ia3=True",
];

/// A tiny HINT trained with `configuration` and exported (which must succeed): the
/// folder, the run, the export.
fn peft_export(configuration: &[&str]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("run");
    train(&model, configuration);
    let output = tmp.path().join("export");
    let (ok, stderr) = export(&model, &output);
    assert!(ok, "{stderr}");
    (tmp, model, output)
}

#[test]
fn generated_lora_exports_as_a_peft_adapter_under_peft_names_and_shapes() {
    let (tmp, model, output) = peft_export(&LORA);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(output.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "SEQ_2_SEQ_LM");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8.0);
    assert_eq!(config["target_modules"], serde_json::json!(["q", "v", "o"]));
    assert_eq!(
        config["rank_pattern"]["decoder.block.0.layer.1.EncDecAttention.v"],
        2
    );
    let tensors =
        tch::Tensor::read_safetensors(output.join("adapter/adapter_model.safetensors")).unwrap();
    let shape = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
            .size()
    };
    // d_model 32, heads × d_kv = 4 × 8: A is [r, in], B is [out, r].
    let q = "base_model.model.encoder.block.0.layer.0.SelfAttention.q";
    assert_eq!(shape(&format!("{q}.lora_A.weight")), [4, 32]);
    assert_eq!(shape(&format!("{q}.lora_B.weight")), [32, 4]);
    let v = "base_model.model.decoder.block.1.layer.1.EncDecAttention.v";
    assert_eq!(shape(&format!("{v}.lora_A.weight")), [2, 32]);
    assert!(
        tensors.iter().all(|(n, _)| !n.contains(".k.")),
        "k has no LoRA"
    );
    // Two encoder blocks × 3 projections + two decoder blocks × 2 attentions × 3.
    assert_eq!(tensors.len(), 2 * (2 * 3 + 2 * 2 * 3));
    let base = tch::Tensor::read_safetensors(output.join("base/model.safetensors")).unwrap();
    assert!(base.iter().all(|(n, _)| !n.starts_with("hyper.")));
    assert!(output.join("base/config.json").is_file());
    assert_eq!(
        std::fs::read(output.join("base/tokenizer.json")).unwrap(),
        std::fs::read(model.join("tokenizer.json")).unwrap()
    );
    // Nothing is left under a temporary name.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    // An existing output is refused and left alone.
    let (ok, stderr) = export(&model, &output);
    assert!(!ok && stderr.contains("exists"), "{stderr}");
}

/// Generated IA3 exports as PEFT's IA3: `ia3_l` of every `k` and `v` as `[out, 1]`, of
/// every feed-forward `wo` as `[1, in]`.
#[test]
fn generated_ia3_exports_as_a_peft_ia3_adapter() {
    let (_tmp, _, output) = peft_export(&IA3);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(output.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "IA3");
    assert_eq!(config["task_type"], "SEQ_2_SEQ_LM");
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["k", "v", "wo"])
    );
    assert_eq!(config["feedforward_modules"], serde_json::json!(["wo"]));
    let tensors =
        tch::Tensor::read_safetensors(output.join("adapter/adapter_model.safetensors")).unwrap();
    let shape = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == &format!("base_model.model.{name}.ia3_l"))
            .unwrap_or_else(|| panic!("no {name}"))
            .1
            .size()
    };
    // d_model 32, 4 heads × d_kv 8, d_ff 64.
    assert_eq!(shape("encoder.block.0.layer.0.SelfAttention.k"), [32, 1]);
    assert_eq!(shape("decoder.block.1.layer.1.EncDecAttention.v"), [32, 1]);
    assert_eq!(shape("encoder.block.1.layer.1.DenseReluDense.wo"), [1, 64]);
    assert_eq!(shape("decoder.block.0.layer.2.DenseReluDense.wo"), [1, 64]);
    // Encoder blocks: k, v, wo; decoder blocks: two attentions' k and v, and wo.
    assert_eq!(tensors.len(), 2 * 3 + 2 * 5);
}

/// PEFT's own loading of an export (LoRA, then IA3) gives HINT's logits. Needs a Python
/// with torch, transformers and PEFT: `cargo xtask test` installs them and sets
/// `HINT_PEFT_PYTHON`.
#[test]
#[ignore = "needs HINT_PEFT_PYTHON (a Python with torch, transformers, peft); cargo xtask test sets it"]
fn peft_from_pretrained_reproduces_the_logits_hint_computed() {
    let python = std::env::var_os("HINT_PEFT_PYTHON").map(PathBuf::from).expect(
        "HINT_PEFT_PYTHON is not set: run `cargo xtask test`, or point it at a Python with torch, transformers and peft",
    );
    for configuration in [&LORA[..], &IA3[..]] {
        peft_check(&python, configuration);
    }
}

fn peft_check(python: &Path, configuration: &[&str]) {
    let (_tmp, _, output) = peft_export(configuration);
    let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hint-model/scripts/peft_check.py");
    let out = Command::new(python)
        .arg(&check)
        .arg(&output)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "PEFT's logits differ from HINT's:\n{text}"
    );
    assert!(text.contains("largest logit difference"), "{text}");
}

/// `--hf`: the run's T5 as Hugging Face lays it out, with the tokenizer; one format must
/// be named.
#[test]
fn the_runs_t5_exports_as_a_hugging_face_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("run");
    train(&model, &[]);
    let output = tmp.path().join("t5");
    // A HINT run's T5 alone is not the HINT model: the export says so.
    assert!(export_hf(&model, &output).contains("without its hypernetwork"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["d_model"], 32);
    assert!(config.get("hint").is_none());
    let tensors = tch::Tensor::read_safetensors(output.join("model.safetensors")).unwrap();
    assert!(tensors
        .iter()
        .any(|(n, _)| n == "encoder.block.0.layer.0.SelfAttention.q.weight"));
    assert!(tensors.iter().all(|(n, _)| !n.starts_with("hyper.")));
    assert!(output.join("tokenizer.json").is_file());

    let out = hint()
        .args(["export", "--model_dir"])
        .arg(&model)
        .arg("--output")
        .arg(tmp.path().join("neither"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--peft") && stderr.contains("--hf"),
        "{stderr}"
    );
    assert!(!tmp.path().join("neither").exists());
}

#[test]
fn configurations_peft_cannot_express_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("default");
    train(&model, &[]);
    let output = tmp.path().join("export");
    let (ok, stderr) = export(&model, &output);
    assert!(!ok);
    for part in [
        "use_adapter",
        "use_prefix",
        "use_fusion_in_decoder",
        "bottleneck",
    ] {
        assert!(stderr.contains(part), "{stderr}");
    }
    assert!(!output.exists(), "a refused export writes nothing");
}
