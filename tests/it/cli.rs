//! The `vesta` binary: import (idempotent, counted) and durability across `kill -9`.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::both_backends;
use crate::helpers::{settings_for, Backend};

fn vesta() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vesta"))
}

fn store_args(cmd: &mut Command, dir: &std::path::Path, url: &Option<String>) {
    cmd.arg("--data-dir").arg(dir);
    if let Some(u) = url {
        cmd.arg("--database-url").arg(u);
    }
}

async fn import_is_idempotent(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(backend, dir.path()).await;
    let ndjson = dir.path().join("patients.ndjson");
    let mut lines = String::new();
    for i in 0..25 {
        lines.push_str(
            &json!({"resourceType": "Patient", "id": format!("imp-{i}"), "active": true})
                .to_string(),
        );
        lines.push('\n');
    }
    lines.push_str(
        &json!({"resourceType": "Observation", "status": "final", "code": {"text": "no id"}})
            .to_string(),
    );
    lines.push('\n');
    std::fs::write(&ndjson, lines).unwrap();
    let bundle = dir.path().join("tx.json");
    std::fs::write(&bundle, json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Practitioner", "id": "dr-1"}, "request": {"method": "PUT", "url": "Practitioner/dr-1"}}
    ]}).to_string()).unwrap();
    let run = || {
        let mut cmd = vesta();
        cmd.arg("import").arg("--quiet");
        store_args(&mut cmd, dir.path(), &settings.database_url);
        cmd.arg(&ndjson).arg(&bundle);
        let out = cmd.output().expect("run vesta import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = run();
    assert!(first.contains("created 27"), "{first}");
    let second = run();
    // The 25 patients with ids and the practitioner are unchanged; the
    // Observation without an id is created again (it has no identity to match).
    assert!(
        second.contains("created 1,") && second.contains("unchanged 25"),
        "{second}"
    );
    assert!(second.contains("resources/s"));
    // An invalid line is reported and counted, and the command fails.
    std::fs::write(&ndjson, "{\"resourceType\":\"Patient\",\"bogus\":1}\n").unwrap();
    let mut cmd = vesta();
    cmd.arg("import").arg("--quiet");
    store_args(&mut cmd, dir.path(), &settings.database_url);
    let out = cmd.arg(&ndjson).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("invalid 1"));
}
both_backends!(import_is_idempotent);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(client: &reqwest::Client, root: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{root}/health/ready")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not become ready");
}

/// Mints a system token with `vesta token` for the server at `port`.
fn token_for(dir: &std::path::Path, port: u16) -> String {
    let out = vesta()
        .args([
            "token",
            "--client",
            "cli-test",
            "--scopes",
            "system/*.cruds",
            "--addr",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run vesta token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Starts `vesta serve` on a free port over the given store, waits until it
/// is ready, and returns a client carrying a token for it.
async fn start_server(
    dir: &std::path::Path,
    url: &Option<String>,
) -> (std::process::Child, String, reqwest::Client) {
    let port = free_port();
    let client = crate::helpers::client_with_token(&token_for(dir, port));
    let client = &client;
    // The writers below are a load generator: lift the backend budget.
    let config = dir.join("vesta-test.toml");
    std::fs::write(
        &config,
        format!(
            "rate_limit_backend_per_minute = {}\n",
            vesta::guard::rate_limit::MAX_PER_MINUTE
        ),
    )
    .expect("write config");
    let mut cmd = vesta();
    cmd.arg("serve")
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&config);
    store_args(&mut cmd, dir, url);
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let root = format!("http://127.0.0.1:{port}");
    wait_ready(client, &root).await;
    (child, root, client.clone())
}

async fn acknowledged_writes_survive_kill_9(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(backend, dir.path()).await;
    let (mut child, root, client) = start_server(dir.path(), &settings.database_url).await;
    let mut acknowledged = Vec::new();
    for i in 0..30 {
        let r = client
            .put(format!("{root}/fhir/Patient/k{i}"))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Patient", "id": format!("k{i}")}).to_string())
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            acknowledged.push(i);
        }
    }
    assert_eq!(acknowledged.len(), 30);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (mut child, root, client) = start_server(dir.path(), &settings.database_url).await;
    for i in acknowledged {
        let r = client
            .get(format!("{root}/fhir/Patient/k{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "Patient/k{i} lost after kill -9");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
both_backends!(acknowledged_writes_survive_kill_9);

async fn sigterm_during_writes_loses_no_acknowledged_write(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(backend, dir.path()).await;
    let (mut child, root, client) = start_server(dir.path(), &settings.database_url).await;
    // Eight writers keep writing until the server goes away.
    let mut writers = Vec::new();
    for w in 0..8 {
        let client = client.clone();
        let root = root.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..10_000 {
                let id = format!("w{w}-{i}");
                let sent = client
                    .put(format!("{root}/fhir/Patient/{id}"))
                    .header("content-type", "application/fhir+json")
                    .body(json!({"resourceType": "Patient", "id": id}).to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => acknowledged.push(id),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    if backend == Backend::Sqlite {
        // A clean stop checkpoints the WAL: the database file alone holds
        // every write, so copying it is a backup.
        let wal = dir.path().join("vesta.db-wal");
        let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert_eq!(wal_bytes, 0, "the WAL still holds data after a clean stop");
    }
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(!acknowledged.is_empty(), "the load ran before the signal");
    let (mut child, root, client) = start_server(dir.path(), &settings.database_url).await;
    for id in &acknowledged {
        let r = client
            .get(format!("{root}/fhir/Patient/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "Patient/{id} was acknowledged but lost");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
both_backends!(sigterm_during_writes_loses_no_acknowledged_write);

/// The entries of a help text that have no description: flag lines
/// (`--x`, `-x, --x`), arguments (`<X>`) and subcommands, under the
/// `Options:`, `Arguments:` and `Commands:` headings. clap puts a
/// description after two or more spaces, or (for long ones) on the next,
/// deeper-indented line.
fn bare_entries(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut in_section = false;
    let mut bare = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') {
            in_section = matches!(line.trim(), "Options:" | "Arguments:" | "Commands:");
            continue;
        }
        let text = line.trim_start();
        let indent = line.len() - text.len();
        // An entry starts at clap's entry indent (2, or 6 for a long flag
        // without a short one); deeper lines are descriptions.
        if !in_section || text.is_empty() || indent > 6 {
            continue;
        }
        let same_line = text
            .split_once("  ")
            .is_some_and(|(_, d)| !d.trim().is_empty());
        let next_line = lines.get(i + 1).is_some_and(|n| {
            let t = n.trim_start();
            !t.is_empty() && n.len() - t.len() > 6
        });
        if !same_line && !next_line {
            bare.push(line.to_string());
        }
    }
    bare
}

/// The subcommands a help text lists (without clap's own `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// `vesta --help` and the help of every subcommand, found by walking the
/// `Commands:` lists, exit 0 and describe every flag, argument and command.
#[test]
fn every_help_describes_every_flag() {
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut seen = Vec::new();
    while let Some(words) = queue.pop() {
        let out = vesta()
            .args(&words)
            .arg("--help")
            .output()
            .expect("run vesta --help");
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        let cmd = format!("vesta {} --help", words.join(" "));
        assert!(out.status.success(), "{cmd} failed: {help}");
        assert!(help.contains("Usage: vesta"), "{cmd}: {help}");
        let bare = bare_entries(&help);
        assert!(
            bare.is_empty(),
            "{cmd}: no description for {bare:?}\n{help}"
        );
        for sub in subcommands(&help) {
            let mut next = words.clone();
            next.push(sub);
            queue.push(next);
        }
        seen.push(words.join(" "));
    }
    for expected in [
        "",
        "serve",
        "import",
        "explain",
        "reindex",
        "token",
        "user",
        "user add",
        "keys",
        "keys rotate",
        "audit",
        "audit verify",
        "audit export",
    ] {
        assert!(
            seen.iter().any(|s| s == expected),
            "`vesta {expected} --help` was not reached: {seen:?}"
        );
    }
    // The checker itself finds a bare flag line.
    assert_eq!(
        bare_entries("Options:\n      --quiet\n  -h, --help  Print help\n"),
        vec!["      --quiet".to_string()]
    );
}
