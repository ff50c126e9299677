//! Gradients summed while the backward pass runs: PyTorch DDP's engine, c10d's `Reducer`,
//! driven from Rust.
// Calls into the c10d shim, each with its reason.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::ptr::NonNull;

use tch::Tensor;

use crate::error::DistError;
use crate::ffi;
use crate::group::{last_error, ProcessGroup};

/// How [`GradientReducer`] buckets gradients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketConfig {
    /// Bytes of gradients per bucket, one collective each (DDP: 25 MiB).
    pub bucket_bytes: usize,
    /// Bytes of the first bucket to be reduced, kept small so that communication starts
    /// early in the backward pass (DDP: 1 MiB).
    pub first_bucket_bytes: usize,
}

impl Default for BucketConfig {
    fn default() -> Self {
        Self {
            bucket_bytes: 25 << 20,
            first_bucket_bytes: 1 << 20,
        }
    }
}

/// Sums the gradients of a set of parameters over the ranks of a [`ProcessGroup`] from
/// inside the backward pass, as PyTorch's `DistributedDataParallel` does (it is the same
/// c10d `Reducer`): each parameter's gradient accumulator fires a hook, and a bucket whose
/// gradients are all ready is summed (asynchronously, by the backend's threads) while the
/// backward pass computes the rest. The pass returns once every bucket is summed.
///
/// Gradients become views of the buckets, so no copies are made; a parameter's `.grad()`
/// must therefore be zeroed in place (`Tensor::zero_grad`), never replaced. The buckets
/// start in the given order and are rebuilt once, after the first reduced pass, in the
/// order the gradients became ready (rank 0's), so that the first bucket reduced holds
/// the gradients computed first.
///
/// With `owners` ([`GradientReducer::sharded`]) each bucket holds the parameters of one
/// rank and is reduced to that rank only (ZeRO stage 2); the other ranks' copies of those
/// gradients are left unspecified.
///
/// In a world of one it does nothing.
pub struct GradientReducer {
    handle: Option<NonNull<ffi::HdReducer>>,
    /// The parameters' names, in the order the shim knows them.
    names: Vec<String>,
    rank: usize,
    world_size: usize,
    armed: bool,
}

impl std::fmt::Debug for GradientReducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradientReducer")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("armed", &self.armed)
            .finish_non_exhaustive()
    }
}

impl Drop for GradientReducer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle {
            // SAFETY: the pointer came from hd_reducer_new and is freed only here; the
            // Reducer removes its hooks from the parameters as it goes.
            unsafe { ffi::hd_reducer_free(handle.as_ptr()) }
        }
    }
}

/// Splits `params` (in order) into runs of one owner (when given) and at most `cap` bytes,
/// the first at most `first_cap`.
fn plan_buckets(
    params: &[(String, Tensor)],
    owner_of: &dyn Fn(&str) -> Option<usize>,
    config: &BucketConfig,
) -> Vec<(Option<usize>, usize)> {
    let mut buckets: Vec<(Option<usize>, usize)> = Vec::new();
    let mut bytes = 0usize;
    let mut previous: Option<(Option<usize>, tch::Kind)> = None;
    for (name, tensor) in params {
        let owner = owner_of(name);
        let key = (owner, tensor.kind());
        // The cap of the bucket being filled: the first one's is smaller.
        let cap = if buckets.len() <= 1 {
            config.first_bucket_bytes
        } else {
            config.bucket_bytes
        };
        let size = tensor.numel() * tensor.kind().elt_size_in_bytes();
        match buckets.last_mut() {
            Some((_, count)) if previous == Some(key) && bytes + size <= cap => {
                *count += 1;
                bytes += size;
            }
            _ => {
                buckets.push((owner, 1));
                bytes = size;
            }
        }
        previous = Some(key);
    }
    buckets
}

impl GradientReducer {
    /// A reducer that sums every gradient of `params` onto every rank. `params` are the
    /// trainable parameters (leaves that require grad), in the same order on every rank.
    pub fn new(
        group: &ProcessGroup,
        params: &[(String, Tensor)],
        config: &BucketConfig,
    ) -> Result<Self, DistError> {
        Self::build(group, params, None, config)
    }

    /// A reducer that sums each gradient onto the rank `owners` names for its parameter
    /// (every parameter must have one).
    pub fn sharded(
        group: &ProcessGroup,
        params: &[(String, Tensor)],
        owners: &BTreeMap<String, usize>,
        config: &BucketConfig,
    ) -> Result<Self, DistError> {
        if let Some((name, _)) = params.iter().find(|(n, _)| !owners.contains_key(n)) {
            return Err(DistError::BadTensor {
                collective: "gradient reduction",
                message: format!("parameter `{name}` has no owner"),
            });
        }
        // One owner's parameters together, in the given order within each.
        let mut ordered: Vec<(String, Tensor)> = Vec::with_capacity(params.len());
        for rank in 0..group.world_size() {
            ordered.extend(
                params
                    .iter()
                    .filter(|(n, _)| owners.get(n) == Some(&rank))
                    .map(|(n, t)| (n.clone(), t.shallow_clone())),
            );
        }
        Self::build(group, &ordered, Some(owners), config)
    }

    fn build(
        group: &ProcessGroup,
        params: &[(String, Tensor)],
        owners: Option<&BTreeMap<String, usize>>,
        config: &BucketConfig,
    ) -> Result<Self, DistError> {
        let mut reducer = Self {
            handle: None,
            names: params.iter().map(|(n, _)| n.clone()).collect(),
            rank: group.rank(),
            world_size: group.world_size(),
            armed: false,
        };
        let Some(raw) = group.raw() else {
            return Ok(reducer);
        };
        if params.is_empty() {
            return Ok(reducer);
        }
        if let Some((name, _)) = params.iter().find(|(_, t)| !t.requires_grad()) {
            return Err(DistError::BadTensor {
                collective: "gradient reduction",
                message: format!("parameter `{name}` does not require grad"),
            });
        }
        let owner_of = |name: &str| owners.and_then(|o| o.get(name).copied());
        let buckets = plan_buckets(params, &owner_of, config);
        let lengths: Vec<usize> = buckets.iter().map(|(_, n)| *n).collect();
        let bucket_owners: Vec<i32> = buckets
            .iter()
            .map(|(owner, _)| owner.unwrap_or(0) as i32)
            .collect();
        let names: Vec<CString> = params
            .iter()
            .map(|(n, _)| CString::new(n.replace('\0', "")).unwrap_or_default())
            .collect();
        let name_pointers: Vec<*const std::os::raw::c_char> =
            names.iter().map(|n| n.as_ptr()).collect();
        let mut tensors: Vec<Tensor> = params.iter().map(|(_, t)| t.shallow_clone()).collect();
        let mut pointers: Vec<*mut torch_sys::C_tensor> =
            tensors.iter_mut().map(|t| t.as_mut_ptr()).collect();
        let mut out: *mut ffi::HdReducer = std::ptr::null_mut();
        // SAFETY: every array has the length passed with it and outlives the call; the
        // shim copies the tensors' handles and the names.
        let code = unsafe {
            ffi::hd_reducer_new(
                raw,
                pointers.as_mut_ptr(),
                name_pointers.as_ptr(),
                pointers.len(),
                lengths.as_ptr(),
                if owners.is_some() {
                    bucket_owners.as_ptr()
                } else {
                    std::ptr::null()
                },
                lengths.len(),
                config.bucket_bytes as i64,
                config.first_bucket_bytes as i64,
                &mut out,
            )
        };
        reducer.handle = Some(
            NonNull::new(out)
                .filter(|_| code == 0)
                .ok_or_else(|| reducer.error("gradient reducer"))?,
        );
        Ok(reducer)
    }

    fn error(&self, collective: &'static str) -> DistError {
        DistError::Collective {
            collective,
            rank: self.rank,
            world_size: self.world_size,
            message: last_error(),
        }
    }

    /// Arms the hooks for the next backward pass, whose gradients (added to those already
    /// accumulated) are then summed: call it before the last microbatch's backward pass
    /// only, so that earlier ones just accumulate locally.
    pub fn prepare(&mut self) -> Result<(), DistError> {
        let Some(handle) = self.handle else {
            return Ok(());
        };
        // SAFETY: the handle is live.
        if unsafe { ffi::hd_reducer_prepare(handle.as_ptr()) } != 0 {
            return Err(self.error("gradient reduction (prepare)"));
        }
        self.armed = true;
        Ok(())
    }

    /// After the armed backward pass: fails when some gradient was never reduced (a
    /// parameter that did not take part in the loss; the message names it).
    pub fn finish(&mut self) -> Result<(), DistError> {
        let Some(handle) = self.handle else {
            return Ok(());
        };
        self.armed = false;
        // SAFETY: the handle is live.
        if unsafe { ffi::hd_reducer_check(handle.as_ptr()) } != 0 {
            let message = last_error();
            return Err(match self.unused_parameters(&message) {
                Some(unused) => DistError::UnusedParameters {
                    rank: self.rank,
                    names: unused,
                },
                None => self.error("gradient reduction"),
            });
        }
        Ok(())
    }

    /// The names behind c10d's "Parameter indices which did not receive grad for rank r:
    /// i j …" (its own message speaks of Python's DDP).
    fn unused_parameters(&self, message: &str) -> Option<Vec<String>> {
        let (_, list) = message.split_once("indices which did not receive grad for rank")?;
        let (_, indices) = list.split_once(':')?;
        let names: Vec<String> = indices
            .lines()
            .next()?
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|i| i.parse::<usize>().ok())
            .filter_map(|i| self.names.get(i).cloned())
            .collect();
        (!names.is_empty()).then_some(names)
    }

    /// Describes a failure of the armed backward pass (where a failed collective surfaces:
    /// the Reducer waits for its buckets at the end of the pass) as the collective's.
    pub fn failed_during_backward(&mut self, message: String) -> DistError {
        self.armed = false;
        let message = match message.split_once("\nException raised from") {
            Some((first, _)) => first.trim().to_string(),
            None => message.trim().to_string(),
        };
        DistError::Collective {
            collective: "gradient all_reduce (in the backward pass)",
            rank: self.rank,
            world_size: self.world_size,
            message,
        }
    }

    /// Whether [`GradientReducer::prepare`] armed the hooks for a pass not yet finished.
    pub fn armed(&self) -> bool {
        self.armed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(sizes: &[i64]) -> Vec<(String, Tensor)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (
                    format!("p{i}"),
                    Tensor::zeros([n], (tch::Kind::Float, tch::Device::Cpu)),
                )
            })
            .collect()
    }

    #[test]
    fn buckets_respect_the_caps_and_a_small_first_bucket() {
        let config = BucketConfig {
            bucket_bytes: 40,
            first_bucket_bytes: 8,
        };
        // 4-byte floats: sizes in bytes 8, 8, 16, 16, 40, 4; the first bucket holds 8 bytes.
        let buckets = plan_buckets(&params(&[2, 2, 4, 4, 10, 1]), &|_| None, &config);
        assert_eq!(
            buckets.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            [1, 3, 1, 1]
        );
    }

    #[test]
    fn a_bucket_holds_one_owner() {
        let config = BucketConfig {
            bucket_bytes: 1 << 20,
            first_bucket_bytes: 1 << 20,
        };
        let owner = |name: &str| Some(usize::from(name == "p2" || name == "p3"));
        let buckets = plan_buckets(&params(&[2, 2, 2, 2, 2]), &owner, &config);
        assert_eq!(buckets, [(Some(0), 2), (Some(1), 2), (Some(0), 1)]);
    }
}
