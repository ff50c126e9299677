//! Training loop behaviour: loss goes down, checkpoints are written, and a run stopped and
//! resumed produces exactly the losses of an uninterrupted run.

use hint_model::{HyperConfig, HyperT5, T5Config};
use hint_optim::{Adafactor, AdafactorConfig, ParamGroup};
use hint_train::{
    read_metrics, BatchSource, EvalMonitor, MetricsLine, ModelDir, NoHooks, Result, TrainBatch,
    TrainConfig, TrainHooks, TrainOutcome, Trainer,
};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// A toy task: copy the input (the instruction says "copy" or "reverse").
struct ToySource {
    position: i64,
}

impl BatchSource for ToySource {
    fn next_batch(&mut self) -> Result<TrainBatch> {
        // Batches depend only on the position, so the state is one integer.
        let g = |i: i64| 3 + (i * 7 + self.position * 13) % 20;
        let rows: Vec<Vec<i64>> = (0..4)
            .map(|r| (0..4).map(|c| g(r * 4 + c)).collect())
            .collect();
        let reverse: Vec<bool> = (0..4).map(|r| (r + self.position) % 2 == 0).collect();
        self.position += 1;
        let targets: Vec<Vec<i64>> = rows
            .iter()
            .zip(&reverse)
            .map(|(row, rev)| {
                let mut t = row.clone();
                if *rev {
                    t.reverse();
                }
                t.push(1);
                t
            })
            .collect();
        let tensor = |rows: &[Vec<i64>]| {
            let width = rows[0].len() as i64;
            Tensor::from_slice(&rows.concat()).view([-1, width])
        };
        let inputs: Vec<Vec<i64>> = rows.iter().map(|r| [r.as_slice(), &[1]].concat()).collect();
        let hyper: Vec<Vec<i64>> = reverse
            .iter()
            .map(|rev| vec![if *rev { 24 } else { 25 }, 1])
            .collect();
        let targets = tensor(&targets);
        let decoder_inputs = Tensor::cat(
            &[
                targets.zeros_like().narrow(1, 0, 1),
                targets.narrow(1, 0, 4),
            ],
            1,
        );
        Ok(TrainBatch {
            inputs: tensor(&inputs),
            hyper_inputs: tensor(&hyper),
            loss_weights: targets.ne(0).to_kind(Kind::Float),
            decoder_inputs,
            targets,
            // Two tasks: reverse the list, or not.
            task_ids: Tensor::from_slice(
                &reverse.iter().map(|r| i64::from(*r)).collect::<Vec<_>>(),
            ),
        })
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "position": self.position })
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        self.position = state["position"].as_i64().unwrap_or(0);
        Ok(())
    }
}

/// libtorch's generator is process-global: runs that must be reproducible take turns.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A tiny HINT on the toy task's vocabulary, with Adafactor over both its groups.
fn tiny_hint(dropout_rate: f64) -> (VarStore, HyperT5, Adafactor) {
    let t5 = T5Config {
        vocab_size: 32,
        dropout_rate,
        ..T5Config::preset("tiny").unwrap()
    };
    let vs = VarStore::new(Device::Cpu);
    let model = HyperT5::new(vs.root(), &t5, &HyperConfig::preset("tiny").unwrap());
    let optimizer = Adafactor::from_var_store(
        &vs,
        ParamGroup::dual(
            AdafactorConfig::with_learning_rate(1e-2),
            AdafactorConfig::with_learning_rate(1e-2),
        ),
    )
    .unwrap();
    (vs, model, optimizer)
}

fn run(dir: &std::path::Path, steps: u64, stop_after: Option<u64>) -> TrainOutcome {
    let _turn = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    let (vs, model, mut optimizer) = tiny_hint(0.1);
    let config = TrainConfig {
        steps,
        checkpoint_every: 2,
        keep_checkpoints: 2,
        ..TrainConfig::default()
    };
    let model_dir = ModelDir::prepare(dir).unwrap();
    let mut trainer = Trainer::new(&model, &vs, &mut optimizer, config, model_dir);
    let mut source = ToySource { position: 0 };
    struct StopAt(Option<u64>, u64);
    impl TrainHooks for StopAt {
        fn on_step(&mut self, m: &hint_train::StepMetrics) {
            self.1 = m.step;
        }
    }
    impl EvalMonitor for StopAt {
        fn should_stop(&self) -> bool {
            self.0.is_some_and(|s| self.1 >= s)
        }
    }
    let mut hooks = StopAt(stop_after, 0);
    match stop_after {
        Some(_) => trainer.train(&mut source, &mut hooks).unwrap(),
        None => trainer.train(&mut source, &mut NoHooks).unwrap(),
    }
}

/// A lone trainer drops its gradients before each step (PyTorch's `set_to_none`): the
/// batch source, asked after that, never sees a parameter holding one.
#[test]
fn a_lone_trainer_drops_its_gradients_before_each_step() {
    struct Watching {
        inner: ToySource,
        parameters: Vec<Tensor>,
        gradients_seen: Vec<usize>,
    }
    impl BatchSource for Watching {
        fn next_batch(&mut self) -> Result<TrainBatch> {
            let held = self
                .parameters
                .iter()
                .filter(|p| p.grad().defined())
                .count();
            self.gradients_seen.push(held);
            self.inner.next_batch()
        }
        fn state(&self) -> serde_json::Value {
            self.inner.state()
        }
        fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
            self.inner.restore(state)
        }
    }
    let _turn = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (vs, model, mut optimizer) = tiny_hint(0.0);
    let config = TrainConfig {
        steps: 3,
        checkpoint_every: 100,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(
        &model,
        &vs,
        &mut optimizer,
        config,
        ModelDir::prepare(tmp.path().join("run")).unwrap(),
    );
    let mut source = Watching {
        inner: ToySource { position: 0 },
        parameters: vs.trainable_variables(),
        gradients_seen: Vec::new(),
    };
    trainer.train(&mut source, &mut NoHooks).unwrap();
    assert_eq!(source.gradients_seen, [0, 0, 0]);
    // They were made: each step's backward pass gave every parameter it reached one.
    let made = vs
        .trainable_variables()
        .iter()
        .filter(|p| p.grad().defined())
        .count();
    assert!(made > 0);
}

fn losses(dir: &std::path::Path) -> Vec<(u64, f64)> {
    read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|line| match line {
            MetricsLine::Train(m) => Some((m.step, m.loss)),
            MetricsLine::Eval { .. } | MetricsLine::Memory { .. } => None,
        })
        .collect()
}

#[test]
fn loss_decreases_and_resume_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    assert_eq!(
        run(&straight, 30, None),
        TrainOutcome::Finished { step: 30 }
    );
    let reference = losses(&straight);
    assert_eq!(reference.len(), 30);
    let first: f64 = reference[..5].iter().map(|l| l.1).sum::<f64>();
    let last: f64 = reference[25..].iter().map(|l| l.1).sum::<f64>();
    assert!(
        last < 0.9 * first,
        "loss did not decrease: {first} → {last}"
    );
    let checkpoints: Vec<_> = std::fs::read_dir(&straight)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("checkpoint_"))
        .collect();
    assert_eq!(checkpoints.len(), 2, "{checkpoints:?}");

    let resumed = tmp.path().join("resumed");
    // Interrupted after step 11 (checkpoint written at 11), then resumed to the end.
    assert_eq!(
        run(&resumed, 30, Some(11)),
        TrainOutcome::Interrupted { step: 11 }
    );
    assert_eq!(run(&resumed, 30, None), TrainOutcome::Finished { step: 30 });
    assert_eq!(losses(&resumed), reference, "resumed losses differ");
}

#[test]
fn a_checkpoint_that_does_not_fit_the_model_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    run(&dir, 2, None);
    let t5 = T5Config {
        vocab_size: 32,
        d_ff: 20,
        ..T5Config::preset("tiny").unwrap()
    };
    let _turn = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let vs = VarStore::new(Device::Cpu);
    let model = HyperT5::new(vs.root(), &t5, &HyperConfig::preset("tiny").unwrap());
    let mut optimizer = Adafactor::from_var_store(
        &vs,
        ParamGroup::dual(AdafactorConfig::default(), AdafactorConfig::default()),
    )
    .unwrap();
    let mut trainer = Trainer::new(
        &model,
        &vs,
        &mut optimizer,
        TrainConfig {
            steps: 4,
            ..TrainConfig::default()
        },
        ModelDir::prepare(&dir).unwrap(),
    );
    let err = trainer
        .train(&mut ToySource { position: 0 }, &mut NoHooks)
        .unwrap_err();
    assert!(
        err.to_string().contains("DenseReluDense") && err.to_string().contains("expects"),
        "{err}"
    );
}

#[test]
fn plot_draws_the_loss_and_eval_curves_of_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ModelDir::prepare(tmp.path().join("run")).unwrap();
    let mut writer = hint_train::MetricsWriter::open(dir.metrics_path()).unwrap();
    for step in 1..=20u64 {
        writer
            .write(&MetricsLine::Train(hint_train::StepMetrics {
                step,
                loss: 100.0 / step as f64,
                z_loss: 0.01,
                loss_per_token: 10.0 / step as f64,
                learning_rate: [("t5".to_string(), 1e-3)].into(),
                grad_norm: 1.0,
                tokens_per_second: 1000.0,
                examples_per_second: 10.0,
                peak_memory_bytes: 1 << 30,
                peak_tensor_bytes: None,
                peak_reserved_bytes: None,
                cosine_loss: None,
                positive_cosine_samples: None,
            }))
            .unwrap();
        if step % 5 == 0 {
            let eval = [("seen/exact_match".to_string(), step as f64 * 3.0)].into();
            writer.write(&MetricsLine::Eval { step, eval }).unwrap();
        }
    }
    let written = hint_train::plot::plot_run(dir.path()).unwrap();
    assert_eq!(written.len(), 2);
    for png in written {
        let bytes = std::fs::read(&png).unwrap();
        assert!(
            bytes.len() > 5_000,
            "{} is too small to hold a chart",
            png.display()
        );
        assert_eq!(&bytes[..4], b"\x89PNG");
    }
}
