//! The `hint` binary as a user runs it.

use std::process::Command;

fn hint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hint"))
}

#[test]
fn version_reports_libtorch_2_13_0_and_cuda() {
    let output = hint().arg("version").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains(&format!("hint {}", env!("CARGO_PKG_VERSION"))));
    assert!(
        stdout.lines().any(|l| l.starts_with("libtorch 2.13.0")),
        "{stdout}"
    );
    assert!(stdout.contains("cuda "), "{stdout}");
}

#[test]
fn help_lists_the_subcommands() {
    let output = hint().arg("--help").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    for command in [
        "version", "train", "eval", "infer", "config", "tasks", "plot",
    ] {
        assert!(stdout.contains(command), "{command} missing from\n{stdout}");
    }
}

#[test]
fn an_experiment_without_its_suite_file_names_it() {
    let output = hint()
        .args(["experiment", "run", "--gin_file=no/such/suite.gin"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("no/such/suite.gin"), "{stderr}");
}

#[test]
fn a_gin_flag_without_value_is_rejected() {
    let output = hint()
        .args(["train", "--gin.TRAIN_STEPS"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--gin.TRAIN_STEPS"), "{stderr}");
}

#[test]
fn config_show_prints_resolved_bindings_as_gin_and_json() {
    let dir = std::env::temp_dir().join(format!("hint-config-show-{}", std::process::id()));
    let gins = dir.join("gins");
    std::fs::create_dir_all(&gins).unwrap();
    std::fs::write(
        gins.join("base.gin"),
        "DROPOUT = 0.1\nmodel.Config:\n  d_model = 512\n  dropout_rate = %DROPOUT\n",
    )
    .unwrap();
    std::fs::write(
        gins.join("run.gin"),
        "include 'base.gin'\nMODEL_DIR = %gin.REQUIRED\ntrainer.Trainer.model_dir = %MODEL_DIR\n",
    )
    .unwrap();
    let search = format!("--gin_search_paths={}", gins.display());

    let output = hint()
        .args(["config", "show", "--gin_file=run.gin", &search])
        .args([
            "--gin.MODEL_DIR=\"/runs/a\"",
            "--gin.model.Config.d_model=768",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("model.Config.d_model = 768"), "{stdout}");
    assert!(stdout.contains("MODEL_DIR = '/runs/a'"), "{stdout}");
    assert!(
        stdout.contains("# Parameters for trainer.Trainer:"),
        "{stdout}"
    );

    let output = hint()
        .args([
            "config",
            "show",
            "--gin_file=run.gin",
            &search,
            "--format",
            "json",
        ])
        .arg("--gin.MODEL_DIR='/runs/b'")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("\"parameter\": \"model_dir\""), "{stdout}");
    assert!(stdout.contains("\"str\": \"/runs/b\""), "{stdout}");
    assert!(
        stdout.contains("\"float\": \"0.1\""),
        "macros are substituted: {stdout}"
    );

    let output = hint()
        .args(["config", "show", "--gin_file=run.gin", &search])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("`MODEL_DIR` set to `%gin.REQUIRED`"),
        "{stderr}"
    );

    std::fs::write(gins.join("bad.gin"), "a.b = 1\nc.d = [1,\n").unwrap();
    let output = hint()
        .args(["config", "show", "--gin_file=bad.gin", &search])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("bad.gin:3:1"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_show_prints_the_translation_of_the_originals_gin() {
    let dir = std::env::temp_dir().join(format!("hint-config-original-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hyper.gin"),
        "from __gin__ import dynamic_registration\n\
         from hyper_task_descriptions.modeling import hyper_network\n\
         from t5x import partitioning\n\
         hyper_network.HyperT5Config:\n  emb_dim = 16\n  use_linear = False\n\
         partitioning.PjitPartitioner.num_partitions = 2\n",
    )
    .unwrap();
    let output = hint()
        .args(["config", "show", "--gin_file=hyper.gin"])
        .arg(format!("--gin_search_paths={}", dir.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("hint.model.T5Config.d_model = 16  # hyper_task_descriptions.modeling.hyper_network.HyperT5Config.emb_dim (")
            && stdout.contains("hyper.gin:5:3)"),
        "{stdout}"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("partitioning.PjitPartitioner.num_partitions is not applied"),
        "{stderr}"
    );

    std::fs::write(
        dir.join("unbuilt.gin"),
        // A method the original's code rejects too (hypertune_decoder_us.gin).
        "hyper_network.HyperT5Config.layer_embedding_method = 'decoder_test'\n",
    )
    .unwrap();
    let output = hint()
        .args([
            "config",
            "show",
            "--gin_file=hyper.gin",
            "--gin_file=unbuilt.gin",
        ])
        .arg(format!("--gin_search_paths={}", dir.display()))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("unbuilt.gin:1:1") && stderr.contains("layer_embedding_method"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
