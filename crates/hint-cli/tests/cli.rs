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
fn unbuilt_subcommands_fail_and_say_so() {
    let output = hint()
        .args(["experiment", "run", "--gin_file=x.gin"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("not built yet"), "{stderr}");
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
