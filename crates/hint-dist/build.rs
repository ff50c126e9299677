//! Compiles `shim/c10d_shim.cpp` against the libtorch torch-sys links (its folder comes as
//! `DEP_TCH_LIBTORCH_LIB`) and Gloo's headers, which the torch wheel lacks: from
//! `GLOO_INCLUDE`, or the system's (Debian's `libgloo-dev`, which `cargo xtask setup`
//! installs when it can).
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=shim/c10d_shim.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
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
    cc::Build::new()
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
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
