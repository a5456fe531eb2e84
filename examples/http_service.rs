//! An HTTP service on axum with the blocking that real handlers hide: a
//! config file re-read with `std::fs`, a `std::sync::Mutex` held while it
//! works, a password hash and a JSON export computed inline, and a helper
//! program run with `std::process::Command::output()`. One route is healthy.
//!
//! ```text
//! cargo run --release --features tower --example http_service [ADDR]
//! curl localhost:3000/config      # then stop it: Ctrl-C, or kill -TERM <pid>
//! ```
//!
//! It listens on `ADDR` (default `127.0.0.1:3000`; port 0 picks a free one),
//! prints `listening on http://ADDR`, and serves until SIGTERM or SIGINT.
//! Then it stops accepting, lets requests in flight finish, drops the
//! runtime and calls `finish()`, which writes the artifacts: copy this
//! shutdown, since a process killed by a signal's default action never
//! reaches `finish()`. `scripts/loadtest.sh` drives it with `wrk`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, State};
use axum::routing::get;
use axum::Router;

/// Config entries the service "reloads" on every `/config` request.
// Several thresholds of parsing (a release build on a quiet 2-core host
// took 20-40 ms for 60 000, right at the load test's 20 ms threshold).
const CONFIG_LINES: usize = 200_000;
/// Latency samples `/stats` sorts while holding the lock.
const STATS_SAMPLES: usize = 1_000_000;
/// Key-stretching rounds per `/login`.
const HASH_ROUNDS: u64 = 8_000_000;
/// Records per `/export`.
const EXPORT_RECORDS: usize = 25_000;

struct AppState {
    config_path: PathBuf,
    stats: Mutex<Vec<u64>>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guard = pollwatch::init()?;
    let rt = pollwatch::tokio::instrument(&mut tokio::runtime::Builder::new_multi_thread())
        .enable_all()
        .build()?;
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let served = rt.block_on(serve(&addr));
    // Dropping the runtime first ends its worker threads' last polls, so the
    // report has every episode.
    drop(rt);
    let report = guard.finish()?;
    print!("{report}");
    served
}

async fn serve(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let state = Arc::new(AppState {
        config_path: write_config_file()?,
        stats: Mutex::new((0..STATS_SAMPLES as u64).map(scramble).collect()),
    });
    let app = Router::new()
        .route("/health", get(health))
        .route("/config", get(config))
        .route("/stats", get(stats))
        .route("/login", get(login))
        .route("/export", get(export))
        .route("/disk", get(disk))
        .with_state(state.clone())
        // Every request watched and named by its route template.
        .layer(
            pollwatch::tower::WatchLayer::new()
                .route_from(|ext| ext.get::<MatchedPath>().map(MatchedPath::as_str)),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let _ = std::fs::remove_file(&state.config_path);
    Ok(())
}

/// Resolves on the first SIGTERM (`kill`, `docker stop`, systemd) or SIGINT
/// (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("cannot install a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("cannot install a SIGINT handler");
    tokio::select! {
        _ = term.recv() => eprintln!("SIGTERM: shutting down"),
        _ = int.recv() => eprintln!("SIGINT: shutting down"),
    }
}

/// The healthy route: no blocking at all.
async fn health() -> &'static str {
    "ok"
}

async fn config(State(state): State<Arc<AppState>>) -> String {
    let entries = load_config(&state.config_path);
    format!("{} config entries\n", entries.len())
}

/// Re-reads and parses the config on every request, with `std::fs` (the
/// bug: `tokio::fs`, or reading it once at start, would not block).
#[inline(never)]
fn load_config(path: &std::path::Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn stats(State(state): State<Arc<AppState>>) -> String {
    let p99 = record_and_summarize(&state.stats);
    format!("p99 {p99}\n")
}

/// Holds a `std::sync::Mutex` while it sorts: concurrent requests wait on
/// the lock inside their poll, blocking their workers too.
#[inline(never)]
fn record_and_summarize(stats: &Mutex<Vec<u64>>) -> u64 {
    let mut samples = stats.lock().unwrap_or_else(|p| p.into_inner());
    let n = samples.len() as u64;
    samples.push(scramble(n));
    let mut sorted = samples.clone();
    sorted.sort_unstable();
    sorted[sorted.len() * 99 / 100]
}

async fn login() -> String {
    format!("{:016x}\n", hash_password("hunter2", b"per-user-salt"))
}

/// Key stretching inline on the worker (belongs in `spawn_blocking`).
#[inline(never)]
fn hash_password(password: &str, salt: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in password.bytes().chain(salt.iter().copied()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    for i in 0..HASH_ROUNDS {
        h = scramble(h ^ i);
    }
    h
}

async fn export() -> String {
    render_export()
}

/// Serializes a large JSON document inline.
#[inline(never)]
fn render_export() -> String {
    let records: Vec<serde_json::Value> = (0..EXPORT_RECORDS)
        .map(|i| {
            serde_json::json!({
                "id": i,
                "name": format!("user-{i}"),
                "score": scramble(i as u64) % 1000,
                "tags": ["a", "b", "c"],
            })
        })
        .collect();
    serde_json::to_string(&records).unwrap_or_default()
}

async fn disk() -> String {
    disk_report()
}

/// Runs a helper program and waits for it on the worker (belongs in
/// `tokio::process`). The `sleep` stands in for a slow tool.
#[inline(never)]
fn disk_report() -> String {
    match std::process::Command::new("sh")
        .args(["-c", "df -kP / && sleep 0.05"])
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => format!("df failed: {e}\n"),
    }
}

/// A config file of `CONFIG_LINES` entries, in the temp directory.
fn write_config_file() -> std::io::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("http-service-{}.conf", std::process::id()));
    let mut text = String::new();
    for i in 0..CONFIG_LINES {
        text.push_str(&format!(
            "feature.flag.{i} = {}\n",
            scramble(i as u64) % 2 == 0
        ));
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A cheap integer mix (splitmix64's finalizer).
fn scramble(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
