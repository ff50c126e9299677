//! Embeds libtorch's library folder as an rpath, so that this crate's tests run without
//! `LD_LIBRARY_PATH`, and records the linked libtorch's version for `hint version`.
//! torch-sys publishes the folder to its direct dependents as `DEP_TCH_LIBTORCH_LIB`.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:rustc-env=HINT_LIBTORCH_VERSION=unknown");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    let root = Path::new(&lib_dir).parent().unwrap_or(Path::new(&lib_dir));
    println!(
        "cargo:rustc-env=HINT_LIBTORCH_VERSION={}",
        libtorch_version(root)
    );
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
