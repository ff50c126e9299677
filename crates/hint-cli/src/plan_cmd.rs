//! `hint plan`: what a run's training step will hold on each rank, and the largest batch
//! that fits a device's memory, before anything is built (`hint_train::plan`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hint_model::RematPolicy;
use hint_train::gigabytes;
use hint_train::plan::{plan, Kernels, MemoryPlan};

use crate::gin_args::GinArgs;

/// Output of `hint plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// A table.
    Text,
    /// The plan as JSON (every term included).
    Json,
}

/// Arguments of `hint plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    gin: GinArgs,
    /// The memory of one device, e.g. `80GB`, `24GiB` or a number of bytes; with it the
    /// plan gives the largest batch per rank that fits.
    #[arg(long = "device_memory", alias = "device-memory", value_parser = parse_bytes)]
    device_memory: Option<u64>,
    /// Held back from the device's memory for what is not tensors (the CUDA context,
    /// the allocator's fragmentation; the process's code on a CPU).
    #[arg(long = "reserve", value_parser = parse_bytes, default_value = "1GB")]
    reserve: u64,
    /// Data-parallel ranks (the global batch is split over them; a sharded optimizer's
    /// state too).
    #[arg(long = "nproc", default_value_t = 1)]
    nproc: usize,
    /// Distinct instructions per example in a batch: the instruction encoder and the
    /// hypernetwork run once per distinct instruction. 1 (the default) assumes every
    /// example brings its own, the most they can cost.
    #[arg(long = "instructions_per_example", default_value_t = 1.0)]
    instructions_per_example: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
}

/// `80GB`, `80G`, `24GiB`, `512MB`, or plain bytes.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size: write e.g. 80GB, 24GiB or 512MB"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`: B, KB, MB, GB, TB, KiB, MiB or GiB"
            ))
        }
    };
    Ok((value * scale) as u64)
}

fn policy_name(policy: RematPolicy) -> &'static str {
    match policy {
        RematPolicy::None => "none",
        RematPolicy::Full => "full",
        RematPolicy::Minimal => "minimal",
    }
}

fn text(plan: &MemoryPlan, device_memory: Option<u64>, reserve: u64) -> String {
    let mut out = String::new();
    let millions = |n: i64| format!("{:.1}M", n as f64 / 1e6);
    let passes = plan
        .batch_per_rank
        .div_ceil(plan.microbatch_per_rank.max(1));
    out.push_str(&format!(
        "parameters: {} ({} trainable); {} rank(s), {} examples per rank{}{}\n",
        millions(plan.parameters),
        millions(plan.trainable_parameters),
        plan.world_size,
        plan.batch_per_rank,
        if passes > 1 {
            format!(" in {passes} microbatches of {}", plan.microbatch_per_rank)
        } else {
            String::new()
        },
        if plan.sharded {
            ", optimizer state sharded"
        } else {
            ""
        }
    ));
    let gradients = if plan.gradients_held {
        format!(
            "{} held throughout (and {} while the largest is accumulated)",
            gigabytes(plan.gradient_bytes),
            gigabytes(plan.accumulation_bytes)
        )
    } else {
        format!(
            "{} (dropped before each step; the first, {}, comes with the activations)",
            gigabytes(plan.gradient_bytes),
            gigabytes(plan.accumulation_bytes)
        )
    };
    out.push_str(&format!(
        "  parameters       {}\n  gradients        {gradients}\n  optimizer state  {} (Adafactor; the most loaded rank's) and {} working buffer\n",
        gigabytes(plan.parameter_bytes),
        gigabytes(plan.optimizer_state_bytes),
        gigabytes(plan.optimizer_scratch_bytes)
    ));
    if plan.weight_copy_bytes > 0 {
        out.push_str(&format!(
            "  weight copies    {} (the weights cast to the compute dtype, kept by the products without remat)\n",
            gigabytes(plan.weight_copy_bytes)
        ));
    }
    out.push_str(match plan.kernels {
        Kernels::Fused => {
            "  activations counted for the fused CPU kernels (RMS norm, gated activation)\n"
        }
        Kernels::Composed => {
            "  activations counted for libtorch's operators (CUDA, or HINT_FUSED_KERNELS=0)\n"
        }
    });
    for policy in [RematPolicy::None, RematPolicy::Minimal, RematPolicy::Full] {
        let mark = if policy == plan.remat_policy {
            " (configured)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  activations      {} per example with remat_policy={}{mark}: {} at {} examples\n",
            gigabytes(plan.activation_bytes(policy)),
            policy_name(policy),
            gigabytes(plan.peak_bytes(plan.microbatch_per_rank, policy)),
            plan.microbatch_per_rank
        ));
    }
    if let Some(memory) = device_memory {
        let usable = memory.saturating_sub(reserve);
        out.push_str(&format!(
            "on {} ({} usable after the {} reserve): ",
            gigabytes(memory),
            gigabytes(usable),
            gigabytes(reserve)
        ));
        // What the step holds at its update, whatever the batch (gradients dropped before
        // a step are all there again by then).
        let model = plan.parameter_bytes + plan.gradient_bytes + plan.optimizer_state_bytes;
        if model > usable {
            out.push_str(&format!(
                "does not fit: parameters, gradients and optimizer state alone take {}{}\n",
                gigabytes(model),
                if plan.sharded || plan.world_size == 1 {
                    ""
                } else {
                    " (TrainConfig.shard_optimizer=True divides the optimizer state)"
                }
            ));
        } else {
            let none = plan.largest_batch(usable, RematPolicy::None);
            let minimal = plan.largest_batch(usable, RematPolicy::Minimal);
            let full = plan.largest_batch(usable, RematPolicy::Full);
            out.push_str(&format!(
                "largest (micro)batch per rank {none} with remat_policy=none, {minimal} with \
                 minimal, {full} with full (global {}, {} and {} per pass)\n",
                none * plan.world_size,
                minimal * plan.world_size,
                full * plan.world_size
            ));
        }
    }
    out
}

/// `hint plan`.
pub fn run(args: &PlanArgs) -> Result<ExitCode> {
    if args.nproc == 0 {
        bail!("--nproc must be at least 1");
    }
    // Planning needs no device: a configuration naming one this machine lacks (a GPU) is
    // planned here too, for the operators such a device runs (libtorch's: the fused
    // kernels are the CPU's). The override changes nothing else, so a configuration that
    // loads only with it failed on its device.
    let (settings, kernels) = match crate::train_cmd::settings_of(&args.gin) {
        Ok(settings) => {
            let kernels = Kernels::on(settings.device);
            (settings, kernels)
        }
        Err(_) => {
            let mut gin = args.gin.clone();
            gin.gin_bindings
                .push("hint.train.Run.device = \"cpu\"".into());
            (crate::train_cmd::settings_of(&gin)?, Kernels::Composed)
        }
    };
    if !(0.0..=1.0).contains(&args.instructions_per_example) {
        bail!("--instructions_per_example is a share of the examples: between 0 and 1");
    }
    let plan = plan(
        &settings,
        args.nproc,
        args.instructions_per_example,
        kernels,
    )
    .context("planning the run's memory")?;
    let mut out = std::io::stdout().lock();
    match args.format {
        PlanFormat::Text => write!(out, "{}", text(&plan, args.device_memory, args.reserve))?,
        PlanFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&plan)?)?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_bytes("80GB"), Ok(80_000_000_000));
        assert_eq!(parse_bytes("24GiB"), Ok(24 << 30));
        assert_eq!(parse_bytes("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("80 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_bytes("GB").is_err());
    }
}
