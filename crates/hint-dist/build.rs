//! Compiles `shim/c10d_shim.cpp` against the libtorch torch-sys links (its folder comes as
//! `DEP_TCH_LIBTORCH_LIB`) and Gloo's headers, which the torch wheel lacks: from
//! `GLOO_INCLUDE`, or the system's (Debian's `libgloo-dev`, which `cargo xtask setup`
//! installs when it can).
//!
//! With the `nccl` feature it also compiles ProcessGroupNCCL's side, which needs CUDA's and
//! NCCL's headers: from `CUDA_INCLUDE` and `NCCL_INCLUDE`, else the pip packages beside
//! the torch wheel (`nvidia/cu13/include`, which `cargo xtask setup --nccl` completes with
//! `nvidia-cuda-crt` and `nvidia-cuda-cccl`, and `nvidia/nccl/include`), and links
//! `torch_cuda`.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=shim/c10d_shim.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=NCCL_INCLUDE");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("hint-dist: torch-sys did not say where libtorch is (DEP_TCH_LIBTORCH_LIB)");
    };
    let lib = PathBuf::from(lib);
    let root = lib.parent().unwrap_or(Path::new("/")).to_path_buf();
    let gloo = match std::env::var_os("GLOO_INCLUDE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from("/usr/include"),
    };
    if !gloo.join("gloo/config.h").is_file() {
        panic!(
            "hint-dist: Gloo's headers are not in {} (the torch wheel has none): \
             `apt-get install libgloo-dev` (cargo xtask setup does it as root), \
             or set GLOO_INCLUDE to a folder holding gloo/config.h",
            gloo.display()
        );
    }
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let nccl = std::env::var_os("CARGO_FEATURE_NCCL").is_some();
    let mut build = cc::Build::new();
    if nccl {
        // The wheel's neighbours in site-packages: torch/ and nvidia/.
        let site = root.parent().unwrap_or(Path::new("/")).to_path_buf();
        let folder = |var: &str, default: PathBuf| {
            std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
        };
        let cuda = folder("CUDA_INCLUDE", site.join("nvidia/cu13/include"));
        let nccl_headers = folder("NCCL_INCLUDE", site.join("nvidia/nccl/include"));
        for (what, dir, file, fix) in [
            ("CUDA's", &cuda, "cuda_runtime_api.h", "pip's nvidia-cuda-runtime (torch's own dependency), or set CUDA_INCLUDE"),
            ("CUDA's", &cuda, "crt/host_config.h", "`cargo xtask setup --nccl` (pip's nvidia-cuda-crt==13.0.88 and nvidia-cuda-cccl==13.0.*), or set CUDA_INCLUDE"),
            ("NCCL's", &nccl_headers, "nccl.h", "pip's nvidia-nccl-cu13 (torch's own dependency), or set NCCL_INCLUDE"),
        ] {
            if !dir.join(file).is_file() {
                panic!(
                    "hint-dist's `nccl` feature needs {what} headers: {} is missing; install {fix}",
                    dir.join(file).display()
                );
            }
        }
        build
            .include(&cuda)
            .include(&nccl_headers)
            .define("HINT_DIST_NCCL", None)
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None);
    }
    build
        .cpp(true)
        .file("shim/c10d_shim.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .define("USE_C10D_GLOO", None)
        .define("USE_DISTRIBUTED", None)
        .define("GLOG_USE_GLOG_EXPORT", None)
        .warnings(false)
        .extra_warnings(false)
        .compile("hint_c10d");
    println!("cargo:rustc-link-search=native={}", lib.display());
    for name in ["torch_cpu", "torch", "c10"] {
        println!("cargo:rustc-link-lib=dylib={name}");
    }
    if nccl {
        for name in ["torch_cuda", "c10_cuda"] {
            println!("cargo:rustc-link-lib=dylib={name}");
        }
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
