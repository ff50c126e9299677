//! Where libtorch comes from, and the environment cargo needs to build and run against it.
//!
//! Three sources, in order of precedence:
//! 1. the user's own libtorch (`LIBTORCH` set): respected, nothing installed;
//! 2. the user's own Python with torch (`LIBTORCH_USE_PYTORCH` set): respected likewise;
//! 3. a virtual environment that `cargo xtask setup` manages in `HINT_TORCH_DIR`
//!    (default `~/.cache/hint/torch-2.13.0`), where pip installs `torch==2.13.0`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The PyTorch release tch 0.26 is built for.
pub const TORCH_VERSION: &str = "2.13.0";

/// Written into the managed folder once torch is installed and checked; its presence
/// makes `setup` a fast no-op.
const ENV_FILE: &str = "hint-torch.env";

/// Where libtorch comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorchSource {
    /// `LIBTORCH` points at an unpacked libtorch (or a torch package folder).
    UserLibtorch(PathBuf),
    /// `LIBTORCH_USE_PYTORCH` asks torch-sys to query the `python3` on PATH.
    UserPython,
    /// The virtual environment managed by `cargo xtask setup`.
    Managed(PathBuf),
}

impl TorchSource {
    /// Decides the source from environment variables (`lookup` is `std::env::var` in
    /// production, a map in tests).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        if let Some(libtorch) = set("LIBTORCH") {
            return Ok(Self::UserLibtorch(PathBuf::from(libtorch)));
        }
        if set("LIBTORCH_USE_PYTORCH").is_some() {
            return Ok(Self::UserPython);
        }
        if let Some(dir) = set("HINT_TORCH_DIR") {
            return Ok(Self::Managed(PathBuf::from(dir)));
        }
        let Some(home) = set("HOME") else {
            bail!("neither HINT_TORCH_DIR nor HOME is set: set HINT_TORCH_DIR to a folder where torch {TORCH_VERSION} may be installed, or LIBTORCH to an existing libtorch");
        };
        Ok(Self::Managed(
            Path::new(&home)
                .join(".cache/hint")
                .join(format!("torch-{TORCH_VERSION}")),
        ))
    }
}

/// What the managed install recorded: enough to build without running Python again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The `torch` package folder (holds `include/` and `lib/`).
    pub libtorch: PathBuf,
    /// `torch.__version__`, e.g. `2.13.0+cu130`.
    pub version: String,
    /// Whether libtorch was built with the C++11 ABI.
    pub cxx11_abi: bool,
}

impl Recorded {
    fn render(&self) -> String {
        format!(
            "LIBTORCH={}\nTORCH_VERSION={}\nLIBTORCH_CXX11_ABI={}\n",
            self.libtorch.display(),
            self.version,
            u8::from(self.cxx11_abi)
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=') {
                fields.insert(key.trim(), value.trim());
            }
        }
        Some(Self {
            libtorch: PathBuf::from(fields.get("LIBTORCH")?),
            version: fields.get("TORCH_VERSION")?.to_string(),
            cxx11_abi: *fields.get("LIBTORCH_CXX11_ABI")? == "1",
        })
    }

    /// Reads the record of a managed folder, if it is complete and still true.
    pub fn load(dir: &Path) -> Option<Self> {
        let recorded = Self::parse(&fs::read_to_string(dir.join(ENV_FILE)).ok()?)?;
        let usable = recorded.libtorch.join("lib").is_dir()
            && recorded.libtorch.join("include").is_dir()
            && recorded.version.starts_with(TORCH_VERSION);
        usable.then_some(recorded)
    }
}

/// The variables to set for cargo and for the programs it runs.
pub fn cargo_env(
    source: &TorchSource,
    recorded: Option<&Recorded>,
    current_ld_path: Option<String>,
) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let lib_dir = match (source, recorded) {
        (TorchSource::Managed(_), Some(recorded)) => {
            let libtorch = recorded.libtorch.display().to_string();
            vars.push(("LIBTORCH".into(), libtorch.clone()));
            vars.push(("LIBTORCH_INCLUDE".into(), libtorch.clone()));
            vars.push(("LIBTORCH_LIB".into(), libtorch));
            vars.push((
                "LIBTORCH_CXX11_ABI".into(),
                u8::from(recorded.cxx11_abi).to_string(),
            ));
            Some(recorded.libtorch.join("lib"))
        }
        (TorchSource::UserLibtorch(libtorch), _) => Some(libtorch.join("lib")),
        _ => None,
    };
    // Binaries carry an rpath (see the crates' build.rs); the library path also covers
    // programs that cargo runs before an rpath exists, such as doctests.
    if let Some(lib_dir) = lib_dir {
        let mut path = lib_dir.display().to_string();
        if let Some(current) = current_ld_path.filter(|p| !p.is_empty()) {
            path = format!("{path}:{current}");
        }
        vars.push(("LD_LIBRARY_PATH".into(), path));
    }
    vars
}

/// Makes sure libtorch is available and returns the environment for cargo.
pub fn ensure() -> Result<Vec<(String, String)>> {
    let source = TorchSource::from_env(|name| std::env::var(name).ok())?;
    let recorded = match &source {
        TorchSource::UserLibtorch(libtorch) => {
            if !libtorch.join("lib").is_dir() {
                bail!(
                    "LIBTORCH={} has no lib/ folder: point LIBTORCH at an unpacked libtorch {TORCH_VERSION} (or the `torch` folder of a Python install), or unset it to let `cargo xtask setup` install torch",
                    libtorch.display()
                );
            }
            None
        }
        TorchSource::UserPython => None,
        TorchSource::Managed(dir) => Some(match Recorded::load(dir) {
            Some(recorded) => recorded,
            None => install(dir)?,
        }),
    };
    let mut vars = cargo_env(
        &source,
        recorded.as_ref(),
        std::env::var("LD_LIBRARY_PATH").ok(),
    );
    if let TorchSource::Managed(dir) = &source {
        ensure_python_peers(dir)?;
        vars.push((
            "HINT_PEFT_PYTHON".into(),
            venv_python(dir).display().to_string(),
        ));
    }
    Ok(vars)
}

/// The Python peers some tests check hint against (PEFT's reading of an exported adapter),
/// pinned; installed into the managed environment once.
const PYTHON_PEERS: [&str; 2] = ["transformers==5.25.0", "peft==0.21.2"];

/// Installs [`PYTHON_PEERS`] into the managed environment unless its marker says they are
/// there (so that `setup` stays a fast no-op afterwards).
fn ensure_python_peers(dir: &Path) -> Result<()> {
    let marker = dir.join("python-peers.txt");
    let wanted = PYTHON_PEERS.join("\n");
    if fs::read_to_string(&marker).is_ok_and(|text| text == wanted) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} with pip into {} (the Python peers of some tests)",
        PYTHON_PEERS.join(" "),
        dir.display()
    );
    if !pip_install(&venv_python(dir), &PYTHON_PEERS)? {
        bail!(
            "`pip install {}` failed in {} (see pip's output above)",
            PYTHON_PEERS.join(" "),
            dir.display()
        );
    }
    write_atomically(&marker, &wanted)
}

/// `python -m pip install packages`, pip's output shown; whether it succeeded.
fn pip_install(python: &Path, packages: &[&str]) -> Result<bool> {
    let status = Command::new(python)
        // No wheel cache: it would keep a second copy of the ~3 GB of wheels on disk.
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-cache-dir",
        ])
        .args(packages)
        .status()
        .with_context(|| format!("cannot run {}", python.display()))?;
    Ok(status.success())
}

/// Describes the source for `cargo xtask setup`'s summary.
pub fn describe() -> Result<String> {
    Ok(
        match TorchSource::from_env(|name| std::env::var(name).ok())? {
            TorchSource::UserLibtorch(path) => format!("your LIBTORCH ({})", path.display()),
            TorchSource::UserPython => "your Python's torch (LIBTORCH_USE_PYTORCH)".to_string(),
            TorchSource::Managed(dir) => match Recorded::load(&dir) {
                Some(r) => format!(
                    "torch {} in {} (libtorch {})",
                    r.version,
                    dir.display(),
                    r.libtorch.display()
                ),
                None => format!("{} (not installed)", dir.display()),
            },
        },
    )
}

const PROBE: &str = "import torch, os; print(os.path.dirname(torch.__file__)); print(torch.__version__); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))";

fn install(dir: &Path) -> Result<Recorded> {
    let python = venv_python(dir);
    if !python.is_file() {
        let host_python = std::env::var("HINT_PYTHON").unwrap_or_else(|_| "python3".into());
        eprintln!(
            "xtask: creating a Python virtual environment in {}",
            dir.display()
        );
        fs::create_dir_all(dir.parent().unwrap_or(dir))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let status = Command::new(&host_python)
            .args(["-m", "venv"])
            .arg(dir)
            .status()
            .with_context(|| format!("`{host_python}` was not found: install Python 3 (Debian: apt-get install python3 python3-venv), set HINT_PYTHON to an interpreter, or set LIBTORCH to an unpacked libtorch {TORCH_VERSION}"))?;
        if !status.success() {
            bail!("`{host_python} -m venv {}` failed: install the venv module (Debian: apt-get install python3-venv), or set LIBTORCH to an unpacked libtorch {TORCH_VERSION}", dir.display());
        }
    }
    if let Some(recorded) = probe(&python)? {
        return record(dir, recorded);
    }
    eprintln!(
        "xtask: installing torch=={TORCH_VERSION} with pip into {} (about 5 GB, a few minutes)",
        dir.display()
    );
    if !pip_install(&python, &[&format!("torch=={TORCH_VERSION}")])? {
        bail!("`pip install torch=={TORCH_VERSION}` failed in {} (see pip's output above): check that PyPI is reachable and that pip works (python3 -m ensurepip), or set LIBTORCH to an unpacked libtorch {TORCH_VERSION}", dir.display());
    }
    match probe(&python)? {
        Some(recorded) => record(dir, recorded),
        None => bail!(
            "torch {TORCH_VERSION} was installed in {} but cannot be imported",
            dir.display()
        ),
    }
}

fn venv_python(dir: &Path) -> PathBuf {
    dir.join("bin").join("python")
}

/// Asks the environment's Python for torch; `None` when torch is absent or another version.
fn probe(python: &Path) -> Result<Option<Recorded>> {
    let output = Command::new(python)
        .args(["-c", PROBE])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !output.status.success() {
        return Ok(None);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines().map(str::trim);
    let (Some(libtorch), Some(version), Some(abi)) = (lines.next(), lines.next(), lines.next())
    else {
        return Ok(None);
    };
    if !version.starts_with(TORCH_VERSION) {
        eprintln!("xtask: found torch {version}, need {TORCH_VERSION}; reinstalling");
        return Ok(None);
    }
    Ok(Some(Recorded {
        libtorch: PathBuf::from(libtorch),
        version: version.to_string(),
        cxx11_abi: abi == "1",
    }))
}

/// Writes the record (and an `env.sh` for users of plain cargo) under temporary names,
/// then renames, so that an interrupted setup never leaves a half-written record.
fn record(dir: &Path, recorded: Recorded) -> Result<Recorded> {
    let env_sh = cargo_env(
        &TorchSource::Managed(dir.to_path_buf()),
        Some(&recorded),
        None,
    )
    .iter()
    .map(|(key, value)| {
        if key == "LD_LIBRARY_PATH" {
            format!("export {key}=\"{value}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\"\n")
        } else {
            format!("export {key}=\"{value}\"\n")
        }
    })
    .collect::<String>();
    write_atomically(&dir.join("env.sh"), &env_sh)?;
    write_atomically(&dir.join(ENV_FILE), &recorded.render())?;
    Ok(recorded)
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

/// The pip packages that complete the CUDA headers beside the torch wheel for hint-dist's
/// `nccl` feature (the wheel's own dependencies bring the runtime's and NCCL's headers).
const NCCL_BUILD_PACKAGES: [&str; 2] = ["nvidia-cuda-crt==13.0.88", "nvidia-cuda-cccl==13.0.*"];

/// Makes the headers hint-dist's `nccl` feature compiles against available: in the managed
/// environment pip installs what is missing; elsewhere it says what to install or set.
pub fn ensure_nccl_headers() -> Result<()> {
    if std::env::var_os("CUDA_INCLUDE").is_some() {
        return Ok(());
    }
    let source = TorchSource::from_env(|name| std::env::var(name).ok())?;
    let (libtorch, managed) = match &source {
        TorchSource::UserLibtorch(libtorch) => (libtorch.clone(), None),
        TorchSource::Managed(dir) => match Recorded::load(dir) {
            Some(recorded) => (recorded.libtorch, Some(dir.clone())),
            None => bail!("torch is not installed in {} yet", dir.display()),
        },
        TorchSource::UserPython => (PathBuf::new(), None),
    };
    // Where hint-dist's build.rs looks: the pip packages beside the torch wheel.
    let cuda = libtorch
        .parent()
        .unwrap_or(Path::new("/"))
        .join("nvidia/cu13/include");
    if cuda.join("crt/host_config.h").is_file() {
        return Ok(());
    }
    let Some(dir) = managed else {
        bail!(
            "the `nccl` feature needs CUDA's headers (crt/host_config.h, cuda_runtime_api.h) and NCCL's: set CUDA_INCLUDE and NCCL_INCLUDE, or pip-install {} beside your torch",
            NCCL_BUILD_PACKAGES.join(" ")
        );
    };
    eprintln!(
        "xtask: installing {} with pip into {} (CUDA headers for NCCL, a few MB)",
        NCCL_BUILD_PACKAGES.join(" "),
        dir.display()
    );
    let installed = pip_install(&venv_python(&dir), &NCCL_BUILD_PACKAGES)?;
    if !installed || !cuda.join("crt/host_config.h").is_file() {
        bail!(
            "`pip install {}` did not provide {}",
            NCCL_BUILD_PACKAGES.join(" "),
            cuda.join("crt/host_config.h").display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn user_libtorch_wins_over_everything() {
        let source = TorchSource::from_env(env(&[
            ("LIBTORCH", "/opt/libtorch"),
            ("LIBTORCH_USE_PYTORCH", "1"),
            ("HINT_TORCH_DIR", "/x"),
            ("HOME", "/home/u"),
        ]))
        .unwrap();
        assert_eq!(source, TorchSource::UserLibtorch("/opt/libtorch".into()));
        let vars = cargo_env(&source, None, Some("/usr/lib".into()));
        // The user's LIBTORCH is inherited untouched; only the run-time path is added.
        assert_eq!(
            vars,
            vec![(
                "LD_LIBRARY_PATH".to_string(),
                "/opt/libtorch/lib:/usr/lib".to_string()
            )]
        );
    }

    #[test]
    fn use_pytorch_is_respected() {
        let source =
            TorchSource::from_env(env(&[("LIBTORCH_USE_PYTORCH", "1"), ("HOME", "/h")])).unwrap();
        assert_eq!(source, TorchSource::UserPython);
        assert!(cargo_env(&source, None, None).is_empty());
    }

    #[test]
    fn hint_torch_dir_overrides_the_default_cache() {
        let source =
            TorchSource::from_env(env(&[("HINT_TORCH_DIR", "/data/torch"), ("HOME", "/h")]))
                .unwrap();
        assert_eq!(source, TorchSource::Managed("/data/torch".into()));
        let default =
            TorchSource::from_env(env(&[("HOME", "/home/u"), ("LIBTORCH", " ")])).unwrap();
        assert_eq!(
            default,
            TorchSource::Managed("/home/u/.cache/hint/torch-2.13.0".into())
        );
        assert!(TorchSource::from_env(env(&[])).is_err());
    }

    #[test]
    fn managed_env_points_every_torch_sys_variable_at_the_package() {
        let recorded = Recorded {
            libtorch: "/c/site-packages/torch".into(),
            version: "2.13.0+cu130".into(),
            cxx11_abi: true,
        };
        let vars = cargo_env(&TorchSource::Managed("/c".into()), Some(&recorded), None);
        let get = |k: &str| {
            vars.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("LIBTORCH"), Some("/c/site-packages/torch"));
        assert_eq!(get("LIBTORCH_INCLUDE"), Some("/c/site-packages/torch"));
        assert_eq!(get("LIBTORCH_LIB"), Some("/c/site-packages/torch"));
        assert_eq!(get("LIBTORCH_CXX11_ABI"), Some("1"));
        assert_eq!(get("LD_LIBRARY_PATH"), Some("/c/site-packages/torch/lib"));
    }

    #[test]
    fn record_round_trips_and_stale_records_are_rejected() {
        let dir = std::env::temp_dir().join(format!("xtask-record-{}", std::process::id()));
        let torch = dir.join("torch");
        fs::create_dir_all(torch.join("lib")).unwrap();
        fs::create_dir_all(torch.join("include")).unwrap();
        let recorded = Recorded {
            libtorch: torch.clone(),
            version: "2.13.0".into(),
            cxx11_abi: false,
        };
        record(&dir, recorded.clone()).unwrap();
        assert_eq!(Recorded::load(&dir), Some(recorded.clone()));
        assert!(fs::read_to_string(dir.join("env.sh"))
            .unwrap()
            .contains("export LIBTORCH_CXX11_ABI=\"0\""));
        // A record of another version, or of a deleted install, does not count.
        write_atomically(
            &dir.join(ENV_FILE),
            &Recorded {
                version: "2.12.0".into(),
                ..recorded.clone()
            }
            .render(),
        )
        .unwrap();
        assert_eq!(Recorded::load(&dir), None);
        record(&dir, recorded).unwrap();
        fs::remove_dir_all(torch.join("lib")).unwrap();
        assert_eq!(Recorded::load(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
