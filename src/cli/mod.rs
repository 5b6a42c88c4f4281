//! The `vesta` command line: `serve`, `import`, `explain`, `reindex`,
//! `token`, `user add`, `keys rotate`, `audit verify`, `audit export`.

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
    #[command(
        after_help = "Logging: RUST_LOG sets the level (default: info,sqlx=warn). Logs carry \
                      method, interaction, status, latency and request id; never resource \
                      content, ids or search values. Stops gracefully on SIGTERM or Ctrl-C."
    )]
    Serve(ServeArgs),
    /// Load NDJSON files and Bundles (transaction, batch or collection) into the store.
    Import(ImportArgs),
    /// Show the SQL and the database's query plan for a search (e.g. "Observation?code=1234-5").
    Explain(ExplainArgs),
    /// Put stored SearchParameter resources in force and rebuild every index row.
    Reindex(ReindexArgs),
    /// Mint an access token from the local signing keys (for operators and scripts).
    Token(TokenArgs),
    /// Manage sign-in users in smart-config/users.toml.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the token signing keys in the data folder.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Serve MCP over stdin/stdout for the access token in VESTA_MCP_TOKEN
    /// (mint one with `vesta token --resource http://<addr>/mcp`).
    Mcp(McpArgs),
    /// Check or export the audit trail (AuditEvents in a hash chain).
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and report the first broken link (exit status 1 if any).
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write AuditEvents as NDJSON (one per line, in chain order) for retention.
    Export {
        /// Output file; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Export only events after this chain position (as printed by an earlier export).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Do not draw a progress spinner.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The client id the token is for.
    #[arg(long)]
    pub client: String,
    /// Space-separated SMART scopes, e.g. "system/*.rs" or "patient/*.rs".
    #[arg(long)]
    pub scopes: String,
    /// Launch patient (for patient/ scopes).
    #[arg(long)]
    pub patient: Option<String>,
    /// A user from smart-config/users.toml; their role limits the scopes.
    #[arg(long)]
    pub user: Option<String>,
    /// An extra audience (RFC 8707), e.g. http://127.0.0.1:8080/mcp.
    #[arg(long)]
    pub resource: Vec<String>,
    /// Lifetime in seconds (at most 604800, 7 days: minted tokens cannot be revoked).
    #[arg(long, default_value_t = 3600)]
    pub ttl: i64,
    /// FHIR base URL the token is for [default: http://<addr>/fhir]
    #[arg(long, env = "VESTA_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
    /// Address the server listens on (for the default base URL).
    #[arg(long, env = "VESTA_ADDR")]
    pub addr: Option<String>,
    /// Folder of roles, users and clients [default: smart-config]
    #[arg(long, env = "VESTA_SMART_CONFIG_DIR")]
    pub smart_config: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct McpArgs {
    /// The access token (its audience must include the MCP resource, <origin>/mcp).
    #[arg(long, env = "VESTA_MCP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// FHIR base URL of the server the token was minted for [default: http://<addr>/fhir]
    #[arg(long, env = "VESTA_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
    /// Address of that server (for the default base URL).
    #[arg(long, env = "VESTA_ADDR")]
    pub addr: Option<String>,
    /// Folder of roles, users and clients [default: smart-config]
    #[arg(long, env = "VESTA_SMART_CONFIG_DIR")]
    pub smart_config: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add or replace a user; the password is read from VESTA_USER_PASSWORD or standard input.
    Add {
        /// The sign-in name.
        username: String,
        /// One of the roles in smart-config/roles.toml (admin, clinician, nurse, …).
        #[arg(long)]
        role: String,
        /// The user's FHIR resource, e.g. Practitioner/123 or Patient/456.
        #[arg(long)]
        fhir_user: Option<String>,
        /// Folder of roles, users and clients [default: smart-config]
        #[arg(long, env = "VESTA_SMART_CONFIG_DIR")]
        smart_config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new signing key; the previous one stays published until the next rotation.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
    },
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
    /// Folder of roles, users and static clients [default: smart-config]
    #[arg(long, env = "VESTA_SMART_CONFIG_DIR")]
    pub smart_config: Option<PathBuf>,
    /// Turn authorization OFF: every request is allowed without a token.
    /// For local experiments with test data only; logged loudly at start.
    #[arg(long, env = "VESTA_INSECURE_OPEN")]
    pub insecure_open: bool,
    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long, env = "VESTA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "VESTA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Origin browser apps may call the API from (repeat, or comma-separated
    /// in VESTA_CORS_ORIGINS); none by default.
    #[arg(
        long = "cors-origin",
        env = "VESTA_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Extra Host (name or name:port) the MCP endpoint /mcp answers besides
    /// loopback and the public base URL's host (repeat, or comma-separated in
    /// VESTA_MCP_ALLOWED_HOSTS).
    #[arg(
        long = "mcp-allowed-host",
        env = "VESTA_MCP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub mcp_allowed_hosts: Vec<String>,
    /// Without a privacy Consent a patient's record is shared (`permit`,
    /// opt-out) or withheld (`deny`, opt-in) [default: permit]
    #[arg(long, env = "VESTA_CONSENT_DEFAULT", value_parser = ["permit", "deny"])]
    pub consent_default: Option<String>,
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

/// The FHIR base a local command speaks for: the public base URL, or the
/// one `serve` would use on its address.
fn fhir_base(s: &Settings) -> String {
    s.public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}/fhir", s.addr))
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            crate::telemetry::init(args.log_json);
            let mut s = settings(
                &args.store,
                args.addr.as_deref(),
                args.public_base_url.as_deref(),
            )?;
            if let Some(d) = args.smart_config {
                s.smart_config_dir = d;
            }
            s.insecure_open |= args.insecure_open;
            if let Some(v) = args.tls_cert {
                s.tls_cert = Some(v);
            }
            if let Some(v) = args.tls_key {
                s.tls_key = Some(v);
            }
            if !args.cors_origins.is_empty() {
                s.cors_origins = args.cors_origins;
            }
            if !args.mcp_allowed_hosts.is_empty() {
                s.mcp_allowed_hosts = args.mcp_allowed_hosts;
                s.validate()?;
            }
            if let Some(v) = args.consent_default {
                s.consent_default = v;
                s.validate()?;
            }
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
            service.close().await;
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
            service.close().await;
            println!(
                "reindexed {done} resources with {custom} stored SearchParameter(s) in force in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Token(args) => {
            let mut s = settings(
                &args.store,
                args.addr.as_deref(),
                args.public_base_url.as_deref(),
            )?;
            if let Some(d) = args.smart_config {
                s.smart_config_dir = d;
            }
            let base = fhir_base(&s);
            let config = crate::auth::smart_config::SmartConfig::load(&s.smart_config_dir)?;
            let token = crate::auth::mint::mint(
                &s.data_dir,
                &config,
                &base,
                &crate::auth::mint::MintRequest {
                    client_id: args.client,
                    scopes: args.scopes,
                    patient: args.patient,
                    user: args.user,
                    resources: args.resource,
                    ttl_s: args.ttl,
                },
            )?;
            println!("{token}");
            Ok(())
        }
        Command::User(UserCommand::Add {
            username,
            role,
            fhir_user,
            smart_config,
        }) => {
            let dir = smart_config
                .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_SMART_CONFIG_DIR));
            let config = crate::auth::smart_config::SmartConfig::load(&dir)?;
            if !config.roles.contains_key(&role) {
                anyhow::bail!(
                    "role '{role}' is not in {}/roles.toml (known: {})",
                    dir.display(),
                    config.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            let password = match std::env::var("VESTA_USER_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if password.len() < 8 {
                anyhow::bail!("the password must be at least 8 characters");
            }
            let hash = crate::auth::smart_config::hash_password(&password)
                .map_err(|e| anyhow::anyhow!(e))?;
            let path = crate::auth::smart_config::add_user(
                &dir,
                crate::auth::smart_config::User {
                    username: username.clone(),
                    password_hash: hash,
                    role,
                    fhir_user,
                },
            )?;
            println!("user '{username}' saved in {}", path.display());
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate { store }) => {
            let s = settings(&store, None, None)?;
            let kid = crate::auth::keys::KeyRing::rotate(&s.data_dir)?;
            println!(
                "new signing key {kid} in {}; the previous key stays published",
                s.data_dir.display()
            );
            Ok(())
        }
        Command::Audit(cmd) => audit_command(cmd).await,
        Command::Mcp(args) => mcp_command(args).await,
        Command::Import(args) => {
            crate::telemetry::init(false);
            let s = settings(&args.store, None, None)?;
            import::run(&s, &args.files, args.quiet).await
        }
    }
}

/// `vesta mcp`: the MCP door over stdio, for the token in `VESTA_MCP_TOKEN`.
async fn mcp_command(args: McpArgs) -> anyhow::Result<()> {
    crate::telemetry::init_stderr();
    let token = args.token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "set VESTA_MCP_TOKEN to an access token for the MCP resource (stdio has no OAuth)"
        )
    })?;
    let mut s = settings(
        &args.store,
        args.addr.as_deref(),
        args.public_base_url.as_deref(),
    )?;
    if let Some(d) = args.smart_config {
        s.smart_config_dir = d;
    }
    let base = fhir_base(&s);
    let mut service = crate::startup::open_service(&s, base.clone()).await?;
    let issuer = crate::startup::origin_of(&base)?;
    service.set_security(crate::fhir::capability::smart_security(&issuer));
    let auth = std::sync::Arc::new(crate::startup::open_auth(&s, &base, service.clone())?);
    let closing = service.clone();
    let result = crate::mcp::serve_stdio(service, auth, token.trim().to_string()).await;
    closing.close().await;
    result
}

/// Opens the store for reading the audit trail, first storing the records
/// a stopped server left in its audit journal (a running server holds the
/// journal and stores its records itself).
async fn open_trail(s: &Settings) -> anyhow::Result<crate::store::Store> {
    let store = crate::store::Store::open(&s.store_options()).await?;
    let audit = crate::audit::AuditLog::new(store.clone());
    let settled = audit.settled().await;
    audit.close().await;
    settled.map_err(|_| anyhow::anyhow!("the audit journal could not be stored"))?;
    Ok(store)
}

async fn audit_command(cmd: AuditCommand) -> anyhow::Result<()> {
    crate::telemetry::init(false);
    match cmd {
        AuditCommand::Verify { store } => {
            let s = settings(&store, None, None)?;
            let store = open_trail(&s).await?;
            let report = crate::audit::chain::verify(&store).await?;
            store.close().await;
            match report.broken {
                None => {
                    println!("audit trail intact: {} links checked", report.checked);
                    Ok(())
                }
                Some((seq, why)) => {
                    println!(
                        "audit trail BROKEN at link {seq}: {why} ({} links before it are intact)",
                        report.checked
                    );
                    std::process::exit(1);
                }
            }
        }
        AuditCommand::Export {
            out,
            after,
            quiet,
            store,
        } => {
            let s = settings(&store, None, None)?;
            let store = open_trail(&s).await?;
            // On stderr, so it never mixes with NDJSON on stdout; indicatif
            // draws nothing when stderr is not a terminal.
            let bar = if quiet {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new_spinner()
            };
            let progress = |n: u64| bar.set_message(format!("{n} AuditEvents exported"));
            let (written, last) = match &out {
                Some(path) => {
                    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
                    let r = crate::audit::export::export_ndjson(&store, after, &mut f, &progress)
                        .await?;
                    std::io::Write::flush(&mut f)?;
                    r
                }
                None => {
                    let mut lock = std::io::stdout().lock();
                    crate::audit::export::export_ndjson(&store, after, &mut lock, &progress).await?
                }
            };
            bar.finish_and_clear();
            store.close().await;
            eprintln!("{written} AuditEvents exported; last chain position {last} (use --after {last} next time)");
            Ok(())
        }
    }
}
