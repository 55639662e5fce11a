//! Where the binaries under test live.
//!
//! Cargo only sets `CARGO_BIN_EXE_*` for binaries of the test's own package,
//! and `rossipd`/`rossipctl` belong to other packages, so the harness finds
//! them next to the test executable: `current_exe()` is
//! `target/<profile>/deps/<test>-<hash>`, the binaries are in
//! `target/<profile>/`. `cargo test --workspace` builds them because both
//! packages have integration tests of their own.

use std::path::PathBuf;

/// Environment variable that names the `rossipd` binary explicitly.
pub const ROSSIPD_ENV: &str = "ROSSIPD_BIN";

/// Environment variable that names the `rossipctl` binary explicitly.
pub const ROSSIPCTL_ENV: &str = "ROSSIPCTL_BIN";

/// Path of the `rossipd` binary; panics with a hint when it is missing.
pub fn rossipd() -> PathBuf {
    locate("rossipd", ROSSIPD_ENV)
}

/// Path of the `rossipctl` binary; panics with a hint when it is missing.
pub fn rossipctl() -> PathBuf {
    locate("rossipctl", ROSSIPCTL_ENV)
}

/// The directory cargo puts binaries of the current profile in.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe of the test binary");
    let dir = exe
        .parent()
        .expect("the test executable has a parent directory")
        .to_path_buf();
    // Integration tests run from `deps/`; anything else (a copied binary)
    // is taken to sit in the profile directory itself.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(PathBuf::from).unwrap_or(dir)
    } else {
        dir
    }
}

fn locate(name: &str, env: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env}={} does not name a file",
            path.display()
        );
        return path;
    }
    let path = target_profile_dir().join(name);
    assert!(
        path.is_file(),
        "binary `{name}` not found at {}: build it with `cargo build -p {name}` \
         (or run `cargo test --workspace`), or set {env} to its path",
        path.display()
    );
    path
}

/// Whether a `rossipd` of this profile is there (or named by
/// [`ROSSIPD_ENV`]); else the error a benchmark prints: how to build it.
/// Benchmarks check first, rather than panic in [`rossipd`] midway.
pub fn rossipd_built() -> Result<(), String> {
    built("rossipd", ROSSIPD_ENV)
}

/// [`rossipd_built`] for `rossipctl`.
pub fn rossipctl_built() -> Result<(), String> {
    built("rossipctl", ROSSIPCTL_ENV)
}

fn built(name: &str, env: &str) -> Result<(), String> {
    let path = target_profile_dir().join(name);
    if std::env::var_os(env).is_some() || path.is_file() {
        return Ok(());
    }
    let release = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    Err(format!(
        "no {name} at {}: build it first with `cargo build{release} -p {name}` (or set \
         {env} to a {name} binary)",
        path.display()
    ))
}

/// What `rossipd --version` prints, for a benchmark's header.
pub fn rossipd_version() -> String {
    crate::sys::run(rossipd(), &["--version"])
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("(version unknown: {e})"))
}
