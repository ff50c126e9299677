//! Embeds libtorch's library folder as an rpath, so that this package's tests and
//! benches run without `LD_LIBRARY_PATH`. torch-sys publishes the folder to its
//! direct dependents as `DEP_TCH_LIBTORCH_LIB`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
