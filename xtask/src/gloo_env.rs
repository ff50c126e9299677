//! Gloo's headers for hint-dist's c10d shim: the torch wheel ships c10d's headers but not
//! Gloo's, which `ProcessGroupGloo.hpp` includes. Debian's `libgloo-dev` provides headers
//! that compile against torch 2.13.0's; as root with apt this installs them, otherwise it
//! says what to install. `GLOO_INCLUDE` (a folder holding `gloo/config.h`) overrides.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const SYSTEM_INCLUDE: &str = "/usr/include";

fn has_headers(dir: &Path) -> bool {
    dir.join("gloo/config.h").is_file()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn apt(args: &[&str]) -> Result<()> {
    eprintln!("xtask: apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("`apt-get {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The folder holding `gloo/`, installing Debian's `libgloo-dev` when it can.
pub fn ensure() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("GLOO_INCLUDE").map(PathBuf::from) {
        if has_headers(&dir) {
            return Ok(dir);
        }
        bail!(
            "GLOO_INCLUDE={} holds no gloo/config.h: point it at the folder above `gloo/`",
            dir.display()
        );
    }
    let system = PathBuf::from(SYSTEM_INCLUDE);
    if has_headers(&system) {
        return Ok(system);
    }
    if is_root() && Path::new("/usr/bin/apt-get").is_file() {
        apt(&["update", "-qq"])?;
        apt(&["install", "-y", "-qq", "libgloo-dev"])?;
        if has_headers(&system) {
            return Ok(system);
        }
    }
    bail!(
        "hint-dist needs Gloo's headers, which the torch wheel lacks: install Debian's libgloo-dev \
         (`sudo apt-get install libgloo-dev`), or set GLOO_INCLUDE to a folder holding gloo/config.h"
    )
}
