//! The SMART App Launch flows driven by the real SMART Python client,
//! `fhirclient` from PyPI (`tests/python/smart_fhirclient.py`): discovery
//! from the CapabilityStatement, authorize with PKCE, sign-in and consent
//! pages, code exchange, reads through its model API, refresh, introspection,
//! revocation. The script's Python environment is made (once, shared by
//! parallel tests) by `tests/python/bootstrap.sh` (`helpers::python`).

use std::path::Path;

use crate::both_backends;
use crate::helpers::python::python;
use crate::helpers::smart::{SmartApp, PASSWORD, PUBLIC_CLIENT, REDIRECT};
use crate::helpers::Backend;

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
