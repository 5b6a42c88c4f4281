//! `vesta import`: streams files into the store through the service layer,
//! validating one chunk while the previous one is written.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::fhir::format::xml_to_json;
use crate::search::definitions::Registry;
use crate::service::import::{
    classify_bundle, validate_for_import, BundleImport, ImportCounts, ValidResource, IMPORT_CHUNK,
};
use crate::service::{Ctx, FhirService, Interaction, Preference};
use crate::startup::open_service_with;

/// Longest NDJSON line accepted (one resource), in bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// Validation problems printed before the rest are only counted.
const MAX_REPORTED_PROBLEMS: u64 = 20;

/// A validated chunk on its way to the writer.
struct Chunk {
    valid: Vec<ValidResource>,
    invalid: u64,
    bytes: u64,
}

enum FileKind {
    Ndjson,
    Json,
    Xml,
}

fn kind_of(path: &Path) -> FileKind {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "ndjson" | "jsonl" => FileKind::Ndjson,
        "xml" => FileKind::Xml,
        _ => FileKind::Json,
    }
}

fn report(problems: &mut u64, location: String, message: String) {
    *problems += 1;
    if *problems <= MAX_REPORTED_PROBLEMS {
        eprintln!("skipped {location}: {message}");
    }
}

/// Reads, parses and validates NDJSON lines on a blocking thread, sending chunks.
fn read_ndjson(path: PathBuf, reg: Arc<Registry>, tx: mpsc::Sender<Chunk>) -> anyhow::Result<u64> {
    let file = std::fs::File::open(&path)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut problems = 0u64;
    let mut line = String::new();
    let mut line_no = 0u64;
    let mut chunk = Chunk {
        valid: Vec::with_capacity(IMPORT_CHUNK),
        invalid: 0,
        bytes: 0,
    };
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_line(&mut line)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        chunk.bytes += n as u64;
        if n > MAX_LINE_BYTES {
            anyhow::bail!(
                "{}:{line_no}: line longer than {MAX_LINE_BYTES} bytes",
                path.display()
            );
        }
        if line.trim().is_empty() {
            continue;
        }
        let parsed = crate::fhir::limits::parse_json(line.as_bytes())
            .map_err(|e| match e {
                Ok(refusal) => refusal.message("the line"),
                Err(e) => format!("not JSON: {e}"),
            })
            .and_then(|v| {
                validate_for_import(&reg, v).map_err(|e| {
                    e.issues
                        .first()
                        .map(|i| {
                            format!(
                                "{} at {}",
                                i.diagnostics,
                                i.expression.clone().unwrap_or_default()
                            )
                        })
                        .unwrap_or_default()
                })
            });
        match parsed {
            Ok(v) => chunk.valid.push(v),
            Err(msg) => {
                chunk.invalid += 1;
                report(&mut problems, format!("{}:{line_no}", path.display()), msg);
            }
        }
        if chunk.valid.len() >= IMPORT_CHUNK {
            let full = std::mem::replace(
                &mut chunk,
                Chunk {
                    valid: Vec::with_capacity(IMPORT_CHUNK),
                    invalid: 0,
                    bytes: 0,
                },
            );
            if tx.blocking_send(full).is_err() {
                return Ok(problems);
            }
        }
    }
    let _ = tx.blocking_send(chunk);
    Ok(problems)
}

async fn import_ndjson(
    service: &FhirService,
    path: &Path,
    bar: &ProgressBar,
    counts: &mut ImportCounts,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Chunk>(2);
    let owned = path.to_path_buf();
    let reg = service.registry();
    let reader = tokio::task::spawn_blocking(move || read_ndjson(owned, reg, tx));
    while let Some(chunk) = rx.recv().await {
        counts.invalid += chunk.invalid;
        let written = service.import_chunk(chunk.valid).await.map_err(|e| {
            anyhow::anyhow!(
                "write failed: {}",
                e.issues
                    .first()
                    .map(|i| i.diagnostics.as_str())
                    .unwrap_or("")
            )
        })?;
        counts.add(&written);
        bar.inc(chunk.bytes);
    }
    reader.await??;
    Ok(())
}

async fn import_document(
    service: &FhirService,
    path: &Path,
    kind: FileKind,
    counts: &mut ImportCounts,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)?;
    let value = match kind {
        FileKind::Xml => xml_to_json(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {} at {}", path.display(), e.message, e.path))?,
        _ => crate::fhir::limits::parse_json(&bytes).map_err(|e| match e {
            Ok(refusal) => anyhow::anyhow!("{}: {}", path.display(), refusal.message("the file")),
            Err(e) => anyhow::anyhow!("{}: not JSON: {e}", path.display()),
        })?,
    };
    let resources = if value.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
        match classify_bundle(value)
            .map_err(|e| anyhow::anyhow!("{}: {:?}", path.display(), e.issues))?
        {
            BundleImport::Interaction(bundle) => {
                // The operator's own command: local, unrestricted access.
                let mut ctx = Ctx::internal();
                ctx.request_id = format!("import-{}", uuid::Uuid::new_v4());
                let outcome = service
                    .execute(
                        &ctx,
                        Interaction::Bundle {
                            bundle,
                            preference: Preference::Minimal,
                        },
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.outcome()))?;
                if let crate::service::Body::Generated(resp) = outcome.body {
                    for entry in resp
                        .get("entry")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        match entry
                            .pointer("/response/status")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                        {
                            "201" => counts.created += 1,
                            "200" | "204" => counts.updated += 1,
                            _ => counts.invalid += 1,
                        }
                    }
                }
                return Ok(());
            }
            BundleImport::Resources(r) => r,
        }
    } else {
        vec![value]
    };
    let mut valid = Vec::with_capacity(resources.len());
    let reg = service.registry();
    for (i, r) in resources.into_iter().enumerate() {
        match validate_for_import(&reg, r) {
            Ok(v) => valid.push(v),
            Err(e) => {
                counts.invalid += 1;
                eprintln!(
                    "skipped {} entry {i}: {:?}",
                    path.display(),
                    e.issues.first().map(|i| &i.diagnostics)
                );
            }
        }
    }
    let mut rest = valid.into_iter();
    loop {
        let chunk: Vec<ValidResource> = rest.by_ref().take(IMPORT_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let written = service
            .import_chunk(chunk)
            .await
            .map_err(|e| anyhow::anyhow!("write failed: {}", e.outcome()))?;
        counts.add(&written);
    }
    Ok(())
}

/// Imports every file, printing a final count and rate.
pub async fn run(settings: &Settings, files: &[PathBuf], quiet: bool) -> anyhow::Result<()> {
    let options = crate::store::StoreOptions {
        sqlite_writer_cache_kib: crate::store::IMPORT_WRITER_CACHE_KIB,
        sqlite_background_checkpoint: false,
        ..settings.store_options()
    };
    let service = open_service_with(settings, options, "urn:vesta:import".into()).await?;
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total_bytes)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut counts = ImportCounts::default();
    for path in files {
        bar.set_message(
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string(),
        );
        match kind_of(path) {
            FileKind::Ndjson => import_ndjson(&service, path, &bar, &mut counts).await?,
            kind => {
                import_document(&service, path, kind, &mut counts).await?;
                bar.inc(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
            }
        }
    }
    bar.finish_and_clear();
    // Fresh statistics let the planner pick the right index for searches.
    if let Err(e) = service.store().optimize().await {
        eprintln!("warning: could not refresh planner statistics: {e}");
    }
    service.close().await;
    let secs = started.elapsed().as_secs_f64();
    let stored = counts.stored();
    println!(
        "imported {stored} resources (created {}, updated {}, unchanged {}, invalid {}) in {secs:.2} s: {:.0} resources/s",
        counts.created,
        counts.updated,
        counts.unchanged,
        counts.invalid,
        stored as f64 / secs.max(1e-9)
    );
    if counts.invalid > 0 {
        anyhow::bail!("{} resources were invalid and skipped", counts.invalid);
    }
    Ok(())
}
