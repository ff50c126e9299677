//! The C face of `shim/c10d_shim.cpp`. Every function returns 0 or -1; after -1,
//! `hd_last_error` holds the C++ exception's message (per thread).
// Declarations of foreign functions are unsafe by nature; their callers in group.rs say
// why each call is sound.
#![allow(unsafe_code)]

use std::os::raw::{c_char, c_int};

use torch_sys::C_tensor;

/// A TCPStore and the process group formed over it (Gloo, and NCCL when built).
#[repr(C)]
pub struct HdGroup {
    _private: [u8; 0],
}

/// A c10d::Reducer: gradient buckets summed from autograd hooks.
#[repr(C)]
pub struct HdReducer {
    _private: [u8; 0],
}

unsafe extern "C" {
    pub fn hd_last_error() -> *const c_char;
    pub fn hd_has_nccl() -> bool;
    #[allow(clippy::too_many_arguments)]
    pub fn hd_group_new(
        host: *const c_char,
        port: u16,
        is_server: bool,
        rank: c_int,
        world: c_int,
        prefix: *const c_char,
        interface_host: *const c_char,
        timeout_ms: i64,
        nccl: bool,
        out: *mut *mut HdGroup,
    ) -> c_int;
    pub fn hd_free(group: *mut HdGroup);
    pub fn hd_all_reduce(
        group: *mut HdGroup,
        tensors: *mut *mut C_tensor,
        n: usize,
        op: c_int,
    ) -> c_int;
    pub fn hd_reduce(group: *mut HdGroup, tensor: *mut C_tensor, root: c_int, op: c_int) -> c_int;
    pub fn hd_broadcast(
        group: *mut HdGroup,
        tensors: *mut *mut C_tensor,
        n: usize,
        root: c_int,
    ) -> c_int;
    pub fn hd_all_gather(group: *mut HdGroup, output: *mut C_tensor, input: *mut C_tensor)
        -> c_int;
    pub fn hd_reduce_scatter(
        group: *mut HdGroup,
        output: *mut C_tensor,
        input: *mut C_tensor,
        op: c_int,
    ) -> c_int;
    pub fn hd_barrier(group: *mut HdGroup) -> c_int;
    pub fn hd_store_set(
        group: *mut HdGroup,
        key: *const c_char,
        value: *const u8,
        len: usize,
    ) -> c_int;
    pub fn hd_store_get(
        group: *mut HdGroup,
        key: *const c_char,
        value: *mut u8,
        capacity: usize,
        len: *mut usize,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub fn hd_reducer_new(
        group: *mut HdGroup,
        params: *mut *mut C_tensor,
        names: *const *const c_char,
        n: usize,
        bucket_lengths: *const usize,
        bucket_owners: *const c_int,
        buckets: usize,
        bucket_bytes: i64,
        first_bucket_bytes: i64,
        out: *mut *mut HdReducer,
    ) -> c_int;
    pub fn hd_reducer_free(reducer: *mut HdReducer);
    pub fn hd_reducer_prepare(reducer: *mut HdReducer) -> c_int;
    pub fn hd_reducer_check(reducer: *mut HdReducer) -> c_int;
}
