//! The `vesta` binary: import (idempotent, counted), durability across
//! `kill -9` and SIGTERM, complete help texts, and logs free of PHI.

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
    if settings.database_url.is_none() {
        // The import refreshed the planner's statistics, keeping averages
        // but no STAT4 samples for `resources` (see store::connect).
        use sqlx::Connection;
        let path = dir.path().join("vesta.db");
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let averages: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'resources'")
                .fetch_one(&mut c)
                .await
                .unwrap();
        let samples: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_stat4 WHERE tbl = 'resources'")
                .fetch_one(&mut c)
                .await
                .unwrap();
        assert!(averages > 0, "ANALYZE ran");
        assert_eq!(samples, 0);
        let other: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_stat4")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert!(other > 0, "other tables keep their samples");
    }
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

/// Import writes a chunk in batches: a resource twice in one file becomes
/// two versions, a changed re-import an update, and the index follows the
/// last version (searches find the new value, not the old).
async fn import_batches_keep_versions_and_index(backend: Backend) {
    let app = crate::helpers::spawn(backend).await;
    let ndjson = app.settings.data_dir.join("dup.ndjson");
    let line = |id: &str, family: &str| {
        format!(
            "{}\n",
            json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]})
        )
    };
    std::fs::write(
        &ndjson,
        [
            line("dup-a", "Alpha"),
            line("dup-b", "Bravo"),
            line("dup-a", "Azure"),
        ]
        .concat(),
    )
    .unwrap();
    let import = || {
        let mut cmd = vesta();
        cmd.arg("import").arg("--quiet");
        store_args(&mut cmd, &app.settings.data_dir, &app.settings.database_url);
        let out = cmd.arg(&ndjson).output().expect("run vesta import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = import();
    assert!(first.contains("created 2, updated 1"), "{first}");
    let a = app.get("/fhir/Patient/dup-a").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["meta"]["versionId"], "2");
    assert_eq!(a.json()["name"][0]["family"], "Azure");
    let history = app.get("/fhir/Patient/dup-a/_history").await;
    let versions = history.json()["entry"].as_array().map_or(0, Vec::len);
    assert_eq!(versions, 2, "{}", history.json());
    // The index holds the last version only.
    let found = |reply: crate::helpers::Reply| reply.json()["entry"].as_array().map_or(0, Vec::len);
    assert_eq!(found(app.get("/fhir/Patient?family=alpha").await), 0);
    assert_eq!(found(app.get("/fhir/Patient?family=azure").await), 1);
    // A changed re-import updates, an unchanged one is left alone.
    std::fs::write(
        &ndjson,
        [line("dup-a", "Azure"), line("dup-b", "Brown")].concat(),
    )
    .unwrap();
    let second = import();
    assert!(
        second.contains("created 0, updated 1, unchanged 1"),
        "{second}"
    );
    let b = app.get("/fhir/Patient/dup-b").await;
    assert_eq!(b.json()["meta"]["versionId"], "2");
    assert_eq!(found(app.get("/fhir/Patient?family=bravo").await), 0);
    assert_eq!(found(app.get("/fhir/Patient?family=brown").await), 1);
}
both_backends!(import_batches_keep_versions_and_index);

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
/// A `system/*.cruds` token for the MCP resource of the server on `port`.
fn mcp_token_for(dir: &std::path::Path, port: u16) -> String {
    let out = vesta()
        .args([
            "token",
            "--client",
            "cli-test",
            "--scopes",
            "system/*.cruds",
        ])
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--resource")
        .arg(format!("http://127.0.0.1:{port}/mcp"))
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
    start_server_logging(dir, url, None).await
}

/// As [`start_server`]; with `log`, the server runs with `RUST_LOG` set to
/// `log.1` and its standard output and error both go to the file `log.0`.
async fn start_server_logging(
    dir: &std::path::Path,
    url: &Option<String>,
    log: Option<(&std::path::Path, &str)>,
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
    match log {
        Some((file, level)) => {
            let out = std::fs::File::create(file).expect("create log file");
            let err = out.try_clone().expect("clone log file");
            cmd.env("RUST_LOG", level).stdout(out).stderr(err)
        }
        None => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
    };
    let child = cmd.spawn().expect("spawn server");
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

/// Reads answered just before a kill -9 keep their AuditEvents: on SQLite
/// they wait in the audit journal, which the next opener (here `vesta audit
/// export`) stores; the chain stays intact.
async fn acknowledged_reads_keep_their_audit_after_kill_9(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(backend, dir.path()).await;
    let (mut child, root, client) = start_server(dir.path(), &settings.database_url).await;
    let mut readers = Vec::new();
    for w in 0..8 {
        let (client, root) = (client.clone(), root.clone());
        readers.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for i in 0.. {
                let id = format!("gone-{w}-{i}");
                match client.get(format!("{root}/fhir/Patient/{id}")).send().await {
                    Ok(r) if r.status() == 404 => answered.push(id),
                    _ => break,
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    child.kill().unwrap(); // SIGKILL, in the middle of the reads
    child.wait().unwrap();
    let mut answered = Vec::new();
    for r in readers {
        answered.extend(r.await.unwrap());
    }
    assert!(answered.len() >= 8, "the reads ran before the kill");
    let out = dir.path().join("audit.ndjson");
    let mut cmd = vesta();
    cmd.args(["audit", "export", "--quiet", "--out"]).arg(&out);
    store_args(&mut cmd, dir.path(), &settings.database_url);
    let done = cmd.output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    for id in &answered {
        assert!(
            text.contains(&format!("\"Patient/{id}\"")),
            "the read of Patient/{id} was answered but its AuditEvent is lost"
        );
    }
    let mut cmd = vesta();
    cmd.args(["audit", "verify"]);
    store_args(&mut cmd, dir.path(), &settings.database_url);
    let verified = cmd.output().unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}
both_backends!(acknowledged_reads_keep_their_audit_after_kill_9);

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

/// Distinctive PHI seeded by [`logs_never_carry_phi`]: family and given
/// names, an MRN, a birth date, an SSN, a phone number, and a resource id
/// (logs name the type, never the id).
const PHI: &[&str] = &[
    "Zyxwvutsrq",
    "Qjxvbnmkwp",
    "MRN7731946",
    "1937-04-23",
    "987-65-4329",
    "555-013-7931",
    "phi-id-kqzjvxw",
];

/// Kills the server it holds when dropped (a test that fails half-way).
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn phi_patient(id: Option<&str>) -> serde_json::Value {
    let mut p = json!({
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN7731946"},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "987-65-4329"}
        ],
        "name": [{"family": "Zyxwvutsrq", "given": ["Qjxvbnmkwp"]}],
        "birthDate": "1937-04-23",
        "telecom": [{"system": "phone", "value": "555-013-7931"}]
    });
    if let Some(id) = id {
        p["id"] = json!(id);
    }
    p
}

/// Consent/audit Guards: "Logs never carry PHI: no resource content, names,
/// identifiers or search values." The real binary runs at `RUST_LOG=debug`
/// (every crate) with its output captured; a scenario carries the PHI above
/// through create, update, read, searches with it in the query, failing
/// requests quoting it (invalid resource, unknown parameter, malformed
/// JSON), a transaction Bundle, a conditional create and update, and 401s;
/// after SIGTERM no PHI string may appear in the log (case-insensitive),
/// and the log must show the requests were logged at all.
async fn logs_never_carry_phi(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(backend, dir.path()).await;
    let log = dir.path().join("server.log");
    let (child, root, client) =
        start_server_logging(dir.path(), &settings.database_url, Some((&log, "debug"))).await;
    // A failed step must not leave the server running.
    let mut guard = KillOnDrop(Some(child));
    let fhir = format!("{root}/fhir");
    let mut sent = 0;
    let mut send = |req: reqwest::RequestBuilder| {
        sent += 1;
        async move {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let text = r.text().await.expect("body");
            (status, text)
        }
    };
    let fhir_json = "application/fhir+json";
    let id = "phi-id-kqzjvxw";

    // Create (server-assigned id), update with a client id, read.
    let (status, text) = send(
        client
            .post(format!("{fhir}/Patient"))
            .header("content-type", fhir_json)
            .body(phi_patient(None).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let (status, text) = send(
        client
            .put(format!("{fhir}/Patient/{id}"))
            .header("content-type", fhir_json)
            .body(phi_patient(Some(id)).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let mut changed = phi_patient(Some(id));
    changed["gender"] = json!("female");
    let (status, text) = send(
        client
            .put(format!("{fhir}/Patient/{id}"))
            .header("content-type", fhir_json)
            .body(changed.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = send(client.get(format!("{fhir}/Patient/{id}"))).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Zyxwvutsrq"));

    // Searches with PHI in the query string, by GET and by form POST.
    for query in [
        "family=Zyxwvutsrq",
        "given=Qjxvbnmkwp",
        "identifier=MRN7731946",
        "identifier=http://hl7.org/fhir/sid/us-ssn|987-65-4329",
        "birthdate=1937-04-23",
        "phone=555-013-7931",
        "name:contains=yxwvuts&_sort=family",
    ] {
        let (status, text) = send(client.get(format!("{fhir}/Patient?{query}"))).await;
        assert_eq!(status, 200, "{query}: {text}");
    }
    let (status, text) = send(
        client
            .post(format!("{fhir}/Patient/_search"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("family=Zyxwvutsrq&birthdate=1937-04-23"),
    )
    .await;
    assert_eq!(status, 200, "{text}");

    // Failing requests that quote the PHI.
    let mut invalid = phi_patient(None);
    invalid["name"][0]["bogus"] = json!("Zyxwvutsrq");
    invalid["birthDate"] = json!("1937-04-23T99");
    let (status, text) = send(
        client
            .post(format!("{fhir}/Patient"))
            .header("content-type", fhir_json)
            .body(invalid.to_string()),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = send(
        client
            .get(format!(
                "{fhir}/Patient?nosuchparam=Zyxwvutsrq&MRN7731946=1"
            ))
            .header("prefer", "handling=strict"),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let (status, text) =
        send(client.get(format!("{fhir}/Patient?birthdate=gt1937-04-23x987-65-4329"))).await;
    assert!(status >= 400, "{status} {text}");
    let (status, text) = send(
        client
            .post(format!("{fhir}/Patient"))
            .header("content-type", fhir_json)
            .body("{\"resourceType\": \"Patient\", \"name\": [{\"family\": \"Zyxwvutsrq\""),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = send(client.get(format!("{fhir}/Patient/{id}-MRN7731946"))).await;
    assert_eq!(status, 404, "{text}");

    // A transaction Bundle (a conditional create entry among them).
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8c5e1f3a-0d7b-4b8e-9a51-6f1e2d3c4b5a",
         "resource": phi_patient(None),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=MRN7731946&_id={id}")}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "Zyxwvutsrq phone 555-013-7931"},
                      "subject": {"reference": format!("Patient/{id}")}},
         "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": "Patient?family=Zyxwvutsrq"}}
    ]});
    let (status, text) = send(
        client
            .post(&fhir)
            .header("content-type", fhir_json)
            .body(bundle.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    // A transaction that fails on an entry quoting the PHI.
    let failing = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Zyxwvutsrq", "bogus": true}]},
         "request": {"method": "POST", "url": "Patient"}}
    ]});
    let (status, text) = send(
        client
            .post(&fhir)
            .header("content-type", fhir_json)
            .body(failing.to_string()),
    )
    .await;
    assert_eq!(status, 400, "{text}");

    // Conditional create (If-None-Exist carrying the identifier): found
    // more than once by now (412), then on a unique one.
    let (status, text) = send(
        client
            .post(format!("{fhir}/Patient"))
            .header("content-type", fhir_json)
            .header("if-none-exist", "identifier=MRN7731946")
            .body(phi_patient(None).to_string()),
    )
    .await;
    assert!(status == 412 || status == 200, "{status} {text}");
    let (status, text) = send(
        client
            .post(format!("{fhir}/Patient"))
            .header("content-type", fhir_json)
            .header(
                "if-none-exist",
                "identifier=http://hl7.org/fhir/sid/us-ssn|987-65-4329",
            )
            .body(phi_patient(None).to_string()),
    )
    .await;
    assert!(status == 412 || status == 200, "{status} {text}");
    // Conditional update by the identifier.
    let (status, text) = send(
        client
            .put(format!("{fhir}/Patient?identifier=MRN7731946&_id={id}"))
            .header("content-type", fhir_json)
            .body(phi_patient(Some(id)).to_string()),
    )
    .await;
    assert!(status < 500, "{status} {text}");

    // 401s: no token, and a bogus one, with PHI in the query.
    let anon = reqwest::Client::new();
    let (status, _) = send(anon.get(format!(
        "{fhir}/Patient?family=Zyxwvutsrq&birthdate=1937-04-23"
    )))
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(
        anon.get(format!("{fhir}/Patient?identifier=MRN7731946"))
            .bearer_auth("987-65-4329.Zyxwvutsrq.555-013-7931"),
    )
    .await;
    assert_eq!(status, 401);

    // MCP calls failing on a resource id: a tool's error result, a
    // resources/read error (rmcp logs a handler's error with its message at
    // warn) and an unknown tool named by the id.
    let port: u16 = root
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mcp = crate::helpers::client_with_token(&mcp_token_for(dir.path(), port));
    let url = format!("{root}/mcp");
    for (method, params) in [
        (
            "tools/call",
            json!({"name": "fhir_read", "arguments": {"type": "Patient", "id": format!("{id}-gone")}}),
        ),
        (
            "resources/read",
            json!({"uri": format!("fhir://Patient/{id}-gone")}),
        ),
        ("tools/call", json!({"name": id, "arguments": {}})),
    ] {
        let (status, text) = send(crate::mcp::stateless(&mcp, &url, method, params)).await;
        assert!(status < 500, "{method}: {status} {text}");
        assert!(
            text.contains(id),
            "{method}: the answer names the id: {text}"
        );
    }

    // Stop gracefully, so every line is flushed.
    let mut child = guard.0.take().expect("the server");
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

    let raw = std::fs::read_to_string(&log).expect("read the server log");
    // Logs to a file are plain text (no colours), so a value is never split
    // by escape codes; the test does not rely on that.
    assert!(!raw.contains('\x1b'), "ANSI colours in a log file");
    let text = strip_ansi(&raw);
    // The scenario was logged: start, one response line per request, debug lines.
    assert!(text.contains("vesta listening"), "{text}");
    let responses = text.matches("finished processing request").count();
    assert!(
        responses >= sent,
        "{responses} response lines for {sent} requests:\n{text}"
    );
    assert!(
        text.contains("DEBUG"),
        "RUST_LOG=debug had no effect:\n{text}"
    );
    let lower = text.to_lowercase();
    let leaks: Vec<String> = PHI
        .iter()
        .filter(|p| lower.contains(&p.to_lowercase()))
        .map(|p| {
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.to_lowercase().contains(&p.to_lowercase()))
                .take(3)
                .collect();
            format!("{p}:\n  {}", lines.join("\n  "))
        })
        .collect();
    assert!(leaks.is_empty(), "PHI in the logs:\n{}", leaks.join("\n"));
}
both_backends!(logs_never_carry_phi);
