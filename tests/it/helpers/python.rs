//! The suite's Python environment (`tests/python/requirements.txt`: the SMART
//! client `fhirclient`, `openapi-spec-validator`), made once by
//! `tests/python/bootstrap.sh` and shared by parallel tests.

use std::path::{Path, PathBuf};

/// Where the Python environment lives: `VESTA_TEST_PYENV`, else beside the
/// build cache (`CARGO_TARGET_DIR`), else under the home folder.
fn pyenv_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VESTA_TEST_PYENV") {
        return PathBuf::from(d);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Path::new(&t).join("vesta-pyenv");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    Path::new(&home).join(".cache").join("vesta-pyenv")
}

/// The environment's interpreter, making the environment first if needed.
pub async fn python() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("bash")
        .arg(repo.join("tests/python/bootstrap.sh"))
        .arg(pyenv_dir())
        .output()
        .await
        .expect("run bootstrap.sh");
    assert!(
        out.status.success(),
        "bootstrap.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("bootstrap.sh prints the interpreter")
        .to_string()
}
