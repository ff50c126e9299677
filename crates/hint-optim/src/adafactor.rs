//! One Adafactor update of one parameter, in t5x's exact order (reference §2).
//!
//! Buffers: the f32 gradient is read, a scratch buffer owned by the optimizer holds
//! `G² + ε1` and then the unscaled update `U`, and everything else is O(m + n) or a
//! 0-d tensor. So the step never synchronises with the device and, for f32
//! parameters, allocates nothing parameter-sized: fresh multi-megabyte CPU
//! allocations are page-faulted in on every step, which cost more than the arithmetic.

use tch::{Kind, Tensor};

use crate::config::AdafactorConfig;
use crate::error::Result;
use crate::slots::{SecondMoment, Slots};

/// Values shared by every parameter of a group at one step.
#[derive(Debug)]
pub(crate) struct StepScalars {
    /// The group's learning rate at this step.
    pub(crate) learning_rate: f64,
    /// Second-moment decay ρ (an f32 value, as t5x computes it).
    pub(crate) rho: f64,
    /// 1 − ρ, in f32.
    pub(crate) mix: f64,
    /// Decoupled weight decay, when on.
    pub(crate) weight_decay: Option<f64>,
    /// Global-norm clipping factor for the group's gradients, when on (0-d f32).
    pub(crate) grad_scale: Option<Tensor>,
}

/// `(ρ, 1 − ρ)` with `ρ = 1 − t^(−decay_rate)`, `t = steps_since_offset + 1`, in f32 like t5x.
pub(crate) fn decay(steps_since_offset: u64, decay_rate: f64) -> (f64, f64) {
    let t = steps_since_offset as f32 + 1.0;
    let rho = 1.0 - t.powf(-(decay_rate as f32));
    (f64::from(rho), f64::from(1.0 - rho))
}

/// The f32 tensor an update works on: a copy of a low-precision parameter (to be copied
/// back, the `bool`), the parameter itself when it is f32 (updated in place).
pub(crate) fn working_copy(param: &Tensor) -> Result<(Tensor, bool)> {
    let low_precision = param.kind() != Kind::Float;
    let w = if low_precision {
        param.f_to_kind(Kind::Float)?
    } else {
        param.shallow_clone()
    };
    Ok((w, low_precision))
}

/// Updates `param` in place from `grad` and its slots. Call under `tch::no_grad`.
pub(crate) fn update_parameter(
    param: &mut Tensor,
    grad: &Tensor,
    slots: &mut Slots,
    config: &AdafactorConfig,
    scalars: &StepScalars,
    scratch: &Tensor,
) -> Result<()> {
    let device = param.device();
    let (mut w, low_precision) = working_copy(param)?;
    let mut g_owned = None;
    if grad.kind() != Kind::Float || grad.device() != device {
        g_owned = Some(grad.f_to_device(device)?.f_to_kind(Kind::Float)?);
    }
    if let Some(scale) = &scalars.grad_scale {
        g_owned = Some(g_owned.as_ref().unwrap_or(grad).f_mul(scale)?);
    }
    let g = g_owned.as_ref().unwrap_or(grad);

    let old = if config.skip_nan_updates {
        Some((
            w.f_detach_copy()?,
            slots
                .named()
                .into_iter()
                .map(|(_, t)| t.f_detach_copy())
                .collect::<Result<Vec<_>, _>>()?,
        ))
    } else {
        None
    };

    let numel = w.numel().max(1) as f64;
    // G² + ε1 in a single pass; this buffer later holds U.
    let mut buf = scratch
        .f_narrow(0, 0, w.numel() as i64)?
        .f_view(w.size().as_slice())?;
    let _ = Tensor::f_scalar_tensor(config.epsilon1, (Kind::Float, device))?
        .f_addcmul_out(&buf, g, g)?;
    let (rho, mix) = (scalars.rho, scalars.mix);
    match &mut slots.second {
        SecondMoment::Factored { dims, v_row, v_col } => {
            let (d0, d1) = (dims.d0 as i64, dims.d1 as i64);
            let mut row_mean = buf.f_mean_dim(&[d0][..], false, Kind::Float)?;
            let mut col_mean = buf.f_mean_dim(&[d1][..], false, Kind::Float)?;
            let _ = v_row.f_mul_scalar_(rho)?;
            let _ = v_row.f_add_(&row_mean.f_mul_scalar_(mix)?)?;
            let _ = v_col.f_mul_scalar_(rho)?;
            let _ = v_col.f_add_(&col_mean.f_mul_scalar_(mix)?)?;
            let row_col_mean =
                v_row.f_mean_dim(&[dims.d1_in_row() as i64][..], true, Kind::Float)?;
            let row_factor = v_row.f_div(&row_col_mean)?.f_rsqrt_()?;
            let col_factor = v_col.f_rsqrt()?;
            let _ = g.f_mul_out(&buf, &row_factor.f_unsqueeze(d0)?)?;
            let _ = buf.f_mul_(&col_factor.f_unsqueeze(d1)?)?;
        }
        SecondMoment::Full { v } => {
            let _ = buf.f_mul_scalar_(mix)?;
            let _ = v.f_mul_scalar_(rho)?;
            let _ = v.f_add_(&buf)?;
            let _ = v.f_rsqrt_out(&buf)?;
            let _ = buf.f_mul_(g)?;
        }
    }

    // factor = lr · param_scale / clip_denominator, kept on the device as a 0-d tensor.
    let inv_sqrt_n = 1.0 / numel.sqrt();
    let mut factor = if config.multiply_by_parameter_scale {
        let mut scale = w.f_norm()?;
        let _ = scale.f_mul_scalar_(inv_sqrt_n)?;
        let _ = scale.f_clamp_min_(config.epsilon2)?;
        if let Some(max_scale) = config.max_parameter_scale {
            let _ = scale.f_clamp_max_(max_scale)?;
        }
        let _ = scale.f_mul_scalar_(scalars.learning_rate)?;
        scale
    } else {
        Tensor::f_scalar_tensor(scalars.learning_rate, (Kind::Float, device))?
    };
    if let Some(threshold) = config.clipping_threshold {
        let mut denominator = buf.f_norm()?;
        let _ = denominator.f_mul_scalar_(inv_sqrt_n / threshold)?;
        let _ = denominator.f_clamp_min_(1.0)?;
        let _ = factor.f_div_(&denominator)?;
    }

    if let Some(wd) = scalars.weight_decay {
        let _ = w.f_mul_scalar_(1.0 - wd)?;
    }
    match (&mut slots.m, config.beta1) {
        (Some(m), Some(beta1)) => {
            let _ = buf.f_mul_(&factor)?;
            let _ = buf.f_mul_scalar_(1.0 - beta1)?;
            let _ = m.f_mul_scalar_(beta1)?;
            let _ = m.f_add_(&buf)?;
            let _ = w.f_sub_(m)?;
        }
        _ => {
            let _ = factor.f_neg_()?;
            let _ = w.f_addcmul_(&buf, &factor)?;
        }
    }

    if let Some((old_w, old_slots)) = old {
        keep_where_nan(&mut w, &old_w)?;
        for ((_, slot), old_slot) in slots.named_mut().into_iter().zip(&old_slots) {
            keep_where_nan(slot, old_slot)?;
        }
    }
    if low_precision {
        param.f_copy_(&w)?;
    }
    Ok(())
}

fn keep_where_nan(new: &mut Tensor, old: &Tensor) -> Result<()> {
    let nan = new.f_isnan()?;
    let merged = old.f_where_self(&nan, new)?;
    new.f_copy_(&merged)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_values_of_the_reference() {
        let cases = [
            (0, 0.0),
            (1, 0.42565),
            (9, 0.84151),
            (99, 0.97488),
            (1_100_000, 0.999985),
        ];
        for (steps, expected) in cases {
            let (rho, mix) = decay(steps, 0.8);
            assert!((rho - expected).abs() < 1e-5, "t={} rho={rho}", steps + 1);
            assert_eq!(mix as f32, 1.0 - rho as f32);
        }
    }
}
