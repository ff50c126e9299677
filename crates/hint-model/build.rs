//! Compiles `shim/autograd_shim.cpp` (rematerialisation's autograd node, the device
//! allocator's statistics, packed inference products) and `shim/fused_kernels.cpp` (the
//! fused RMS norm and gated activation, parallel through libtorch's OpenMP runtime)
//! against the libtorch torch-sys links, embeds libtorch's
//! library folder as an rpath, so that this crate's tests run without `LD_LIBRARY_PATH`,
//! and records the linked libtorch's version for `hint version`. torch-sys publishes the
//! folder to its direct dependents as `DEP_TCH_LIBTORCH_LIB`.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=shim/autograd_shim.cpp");
    println!("cargo:rerun-if-changed=shim/fused_kernels.cpp");
    println!("cargo:rerun-if-changed=shim/guarded.h");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("hint-model: torch-sys did not say where libtorch is (DEP_TCH_LIBTORCH_LIB)");
    };
    let root = Path::new(&lib_dir).parent().unwrap_or(Path::new(&lib_dir));
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("shim/autograd_shim.cpp")
        .file("shim/fused_kernels.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        // Optimised even in debug builds, whose tests would otherwise crawl through the
        // fused kernels.
        .opt_level(3)
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .warnings(false)
        .extra_warnings(false);
    // at::parallel_for is OpenMP in libtorch's headers: the kernels run on several threads
    // when GCC compiles them and they can share the OpenMP runtime libtorch ships (one
    // thread pool, sized by `set_num_threads`); otherwise on one, still vectorised (their
    // reductions vectorise only under `omp simd`).
    let openmp = openmp_runtime(Path::new(&lib_dir));
    let compiler = build.get_compiler();
    let parallel = openmp.is_some() && compiler.is_like_gnu() && !compiler.is_like_clang();
    build.flag(if parallel {
        "-fopenmp"
    } else {
        "-fopenmp-simd"
    });
    build.compile("hint_model_shim");
    println!("cargo:rustc-link-search=native={lib_dir}");
    for name in ["torch_cpu", "torch", "c10"] {
        println!("cargo:rustc-link-lib=dylib={name}");
    }
    if let (true, Some(file)) = (parallel, openmp) {
        println!("cargo:rustc-link-lib=dylib:+verbatim={file}");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    println!(
        "cargo:rustc-env=HINT_LIBTORCH_VERSION={}",
        libtorch_version(root)
    );
}

/// The GNU OpenMP runtime shipped beside libtorch: `libgomp.so.1` in the Python wheel,
/// `libgomp-<hash>.so.1` in a standalone libtorch.
fn openmp_runtime(lib_dir: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(lib_dir)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("libgomp") && name.contains(".so"))
        .collect();
    names.sort();
    names.into_iter().next()
}

/// A standalone libtorch has a `build-version` file; the `torch` Python package a
/// `version.py` with `__version__ = '2.13.0+cu130'`.
fn libtorch_version(root: &Path) -> String {
    let build_version = root.join("build-version");
    let version_py = root.join("version.py");
    println!("cargo:rerun-if-changed={}", build_version.display());
    println!("cargo:rerun-if-changed={}", version_py.display());
    if let Ok(text) = std::fs::read_to_string(&build_version) {
        return text.trim().to_string();
    }
    if let Ok(text) = std::fs::read_to_string(&version_py) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("__version__") {
                let value = rest.trim_start_matches([' ', '=', ':', 's', 't', 'r']);
                return value.trim().trim_matches(['\'', '"']).to_string();
            }
        }
    }
    "unknown".to_string()
}
