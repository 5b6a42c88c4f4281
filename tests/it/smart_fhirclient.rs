//! The SMART App Launch flows driven by the real SMART Python client,
//! `fhirclient` from PyPI (`tests/python/smart_fhirclient.py`): discovery
//! from the CapabilityStatement, authorize with PKCE, sign-in and consent
//! pages, code exchange, reads through its model API, refresh, introspection,
//! revocation. The script's Python environment is made (once, shared by
//! parallel tests) by `tests/python/bootstrap.sh`.

use std::path::{Path, PathBuf};

use crate::both_backends;
use crate::helpers::smart::{SmartApp, PASSWORD, PUBLIC_CLIENT, REDIRECT};
use crate::helpers::Backend;

/// Where the Python environment lives: `VESTA_TEST_PYENV`, else beside the
/// build cache (`CARGO_TARGET_DIR`), else under the home folder.
pub(crate) fn pyenv_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VESTA_TEST_PYENV") {
        return PathBuf::from(d);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Path::new(&t).join("vesta-pyenv");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    Path::new(&home).join(".cache").join("vesta-pyenv")
}

pub(crate) async fn python() -> String {
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

async fn fhirclient_runs_the_launch(backend: Backend) {
    let py = python().await;
    let s = SmartApp::start(backend).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/smart_fhirclient.py");
    let out = tokio::process::Command::new(py)
        .arg(script)
        .args(["--fhir-base", &s.app.base])
        .args(["--username", "alice", "--password", PASSWORD])
        .args(["--patient", "p1", "--other-patient", "p2"])
        .args(["--client-id", PUBLIC_CLIENT, "--redirect-uri", REDIRECT])
        .output()
        .await
        .expect("run smart_fhirclient.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fhirclient run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The script prints one "ok" line per check; a run that checked little
    // is a broken script, not a pass.
    let passed = stdout.lines().filter(|l| l.starts_with("ok")).count();
    assert!(passed >= 20, "only {passed} checks ran:\n{stdout}");
}
both_backends!(fhirclient_runs_the_launch);
