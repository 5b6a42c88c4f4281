//! The suite's Node tools (`tests/node/package-lock.json`: the MCP Inspector
//! CLI), installed once by `tests/node/bootstrap.sh` into a folder beside
//! the build cache and shared by parallel tests.

use std::path::{Path, PathBuf};

/// Where the Node tools live: `VESTA_TEST_NODE_DIR`, else beside the build
/// cache (`CARGO_TARGET_DIR`), else under the home folder.
fn node_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VESTA_TEST_NODE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Path::new(&t).join("vesta-node");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    Path::new(&home).join(".cache").join("vesta-node")
}

/// The folder to pass to `npx --prefix`, installing the tools first if
/// needed (bounded by the script's own timeout).
pub async fn tools_dir() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("bash")
        .arg(repo.join("tests/node/bootstrap.sh"))
        .arg(node_dir())
        .output()
        .await
        .expect("run tests/node/bootstrap.sh");
    assert!(
        out.status.success(),
        "tests/node/bootstrap.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("bootstrap.sh prints the folder")
            .trim(),
    )
}
