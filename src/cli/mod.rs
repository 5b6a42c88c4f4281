//! The `vesta` command line: `serve` and `import`.

mod import;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{FileSettings, Settings};
use crate::startup::{shutdown_signal, Application};

#[derive(Debug, Parser)]
#[command(name = "vesta", version, about = "Vesta: a SMART-on-FHIR R4 server", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the FHIR server (SQLite in ./vesta-data unless --database-url is given).
    Serve(ServeArgs),
    /// Load NDJSON files and Bundles (transaction, batch or collection) into the store.
    Import(ImportArgs),
    /// Show the SQL and the database's query plan for a search (e.g. "Observation?code=1234-5").
    Explain(ExplainArgs),
    /// Put stored SearchParameter resources in force and rebuild every index row.
    Reindex(ReindexArgs),
}

/// Where the data lives; shared by every subcommand that opens the store.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Settings file (TOML); flags and VESTA_* variables override it.
    #[arg(long, env = "VESTA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder for the SQLite database and keys [default: vesta-data]
    #[arg(long, env = "VESTA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// postgres://user:pass@host/db selects PostgreSQL; otherwise SQLite in the data folder.
    #[arg(long, env = "VESTA_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "VESTA_ADDR")]
    pub addr: Option<String>,
    /// FHIR base URL as clients see it (behind a proxy) [default: http://<addr>/fhir]
    #[arg(long, env = "VESTA_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
    /// Log as JSON lines (for log collectors) instead of human-readable text.
    #[arg(long, env = "VESTA_LOG_JSON")]
    pub log_json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// NDJSON (.ndjson, .jsonl) files, or JSON/XML files holding a Bundle or a resource.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct ReindexArgs {
    /// Do not draw a progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The search, relative to the FHIR base: `Type?params`.
    pub search: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Settings from defaults, the config file, then flags and environment.
pub fn settings(
    store: &StoreArgs,
    addr: Option<&str>,
    base: Option<&str>,
) -> anyhow::Result<Settings> {
    let mut s = Settings::default();
    if let Some(path) = &store.config {
        FileSettings::load(path)?.apply(&mut s)?;
    }
    if let Some(dir) = &store.data_dir {
        s.data_dir = dir.clone();
    }
    if let Some(url) = &store.database_url {
        s.database_url = Some(url.clone());
    }
    if let Some(a) = addr {
        s.addr = a.parse().map_err(|_| crate::config::ConfigError {
            key: "addr".into(),
            message: "must be host:port, e.g. 127.0.0.1:8080".into(),
        })?;
    }
    if let Some(b) = base {
        s.public_base_url = Some(b.to_string());
    }
    s.validate()?;
    Ok(s)
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            crate::telemetry::init(args.log_json);
            let s = settings(
                &args.store,
                args.addr.as_deref(),
                args.public_base_url.as_deref(),
            )?;
            let app = Application::build(&s).await?;
            tracing::info!(
                addr = %app.addr(),
                base = %app.base_url(),
                backend = if s.database_url.is_some() { "postgres" } else { "sqlite" },
                "vesta listening"
            );
            app.run_until(shutdown_signal()).await
        }
        Command::Explain(args) => {
            crate::telemetry::init(false);
            let s = settings(&args.store, None, None)?;
            let service = crate::startup::open_service(&s, "urn:vesta:explain".into()).await?;
            let (path, query) = args
                .search
                .split_once('?')
                .unwrap_or((args.search.as_str(), ""));
            let text = service
                .explain_search(path.trim_matches('/'), query)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.outcome()))?;
            println!("{text}");
            service.store().close().await;
            Ok(())
        }
        Command::Reindex(args) => {
            crate::telemetry::init(false);
            let s = settings(&args.store, None, None)?;
            let service = crate::startup::open_service(&s, "urn:vesta:reindex".into()).await?;
            let bar = if args.quiet {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new_spinner()
            };
            let started = std::time::Instant::now();
            let (custom, done) = service
                .reindex(&|n| bar.set_message(format!("{n} resources reindexed")))
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.outcome()))?;
            bar.finish_and_clear();
            service.store().close().await;
            println!(
                "reindexed {done} resources with {custom} stored SearchParameter(s) in force in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Import(args) => {
            crate::telemetry::init(false);
            let s = settings(&args.store, None, None)?;
            import::run(&s, &args.files, args.quiet).await
        }
    }
}
