//! A throwaway PostgreSQL cluster for the suite (or `VESTA_TEST_POSTGRES_URL`),
//! and a fresh database per test.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::sync::OnceCell;

static ADMIN_URL: OnceCell<String> = OnceCell::const_new();

/// Finds a PostgreSQL server binary, or fails naming the package to install.
fn pg_bin(name: &str) -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries ({name}) not found: install the Debian package \
             'postgresql' (apt-get install postgresql) or set VESTA_TEST_POSTGRES_URL"
            )
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// PostgreSQL refuses to run as root; run it as the `postgres` user then.
fn as_pg_user(bin: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts a cluster in a temp folder on loopback; it stops when this process exits.
// The watchdog shell must outlive this function, so it is never waited on.
#[allow(clippy::zombie_processes)]
async fn start_cluster() -> String {
    let dir = std::env::temp_dir().join(format!("vesta-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("pg dir");
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "cannot chown the PostgreSQL folder to the postgres user"
        );
    }
    let data = dir.join("data");
    let out = as_pg_user(pg_bin("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "vesta", "--no-sync", "-E", "UTF8"])
        .stdout(Stdio::null())
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let postgres = pg_bin("postgres");
    // A watchdog shell: starts postgres, and stops it (and removes the folder)
    // as soon as this test process is gone.
    let script = format!(
        "{run} {pg} -D {data} -k {dir} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 >{dir}/log 2>&1 & \
         pid=$!; while kill -0 {parent} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.5; done; \
         kill -INT $pid 2>/dev/null; wait $pid; rm -rf {dir}",
        run = if is_root() { "runuser -u postgres --" } else { "" },
        pg = postgres.display(),
        data = data.display(),
        dir = dir.display(),
        parent = std::process::id(),
    );
    // The watchdog outlives this call by design; it is reaped when the suite exits.
    let _watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start postgres");
    let url = format!("postgres://vesta@127.0.0.1:{port}/postgres");
    for _ in 0..150 {
        if sqlx::PgPool::connect(&url).await.is_ok() {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    panic!("PostgreSQL did not start: {log}");
}

/// The admin URL of the suite's cluster.
async fn admin_url() -> String {
    ADMIN_URL
        .get_or_init(|| async {
            match std::env::var("VESTA_TEST_POSTGRES_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => start_cluster().await,
            }
        })
        .await
        .clone()
}

/// Creates an empty database for one test and returns its URL.
pub async fn fresh_database() -> String {
    let admin = admin_url().await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect to test cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create test database");
    pool.close().await;
    let (prefix, _) = admin.rsplit_once('/').expect("database URL has a path");
    format!("{prefix}/{name}")
}
