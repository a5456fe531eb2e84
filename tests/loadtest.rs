//! `scripts/loadtest.sh` at a small scale: the example HTTP service runs as
//! its own process with `POLLWATCH=1`, takes load over loopback (wrk with
//! the script's request mix when it is installed, else plain requests from
//! this test), is stopped with SIGTERM, and its artifacts must name every
//! blocking route's function and never the healthy route's handler.
//!
//! The service is the `http_service` example binary, which `cargo test
//! --all-features` builds next to this test. Set `POLLWATCH_REQUIRE_WRK=1`
//! (CI does) to fail rather than fall back when wrk is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Each blocking route and the function in it that blocks.
const BLOCKING: &[(&str, &str)] = &[
    ("/config", "http_service::load_config"),
    ("/stats", "http_service::record_and_summarize"),
    ("/login", "http_service::hash_password"),
    ("/export", "http_service::render_export"),
    ("/disk", "http_service::disk_report"),
];
const HEALTHY_HANDLER: &str = "http_service::health";
const LOAD_FOR: Duration = Duration::from_secs(4);

fn example_binary() -> PathBuf {
    // target/<profile>/deps/loadtest-<hash> -> target/<profile>/examples/
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/http_service");
    assert!(
        bin.exists(),
        "{} is not built: run `cargo test --all-features` (it builds the examples) \
         or `cargo build --all-features --example http_service` first",
        bin.display()
    );
    // `cargo test --test loadtest` alone does not rebuild examples.
    let built = modified(&bin);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let newer: Vec<PathBuf> = sources(&root.join("src"))
        .into_iter()
        .chain([root.join("examples/http_service.rs")])
        .filter(|p| modified(p) > built)
        .collect();
    assert!(
        newer.is_empty(),
        "{} is older than {newer:?}: rebuild it with `cargo build --all-features --example http_service`",
        bin.display()
    );
    bin
}

fn modified(p: &std::path::Path) -> std::time::SystemTime {
    std::fs::metadata(p).and_then(|m| m.modified()).unwrap()
}

fn sources(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_load_test_names_every_blocking_route_and_not_the_healthy_one() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pollwatch-loadtest");
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(example_binary())
        .arg("127.0.0.1:0")
        .env("POLLWATCH", "1")
        .env("POLLWATCH_DIR", &out)
        .env("POLLWATCH_LIVE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    drive(&url, &mut child);
    // However slow the machine (a debug build under load serves a few
    // requests a second), every route is requested at least once.
    let addr = url.trim_start_matches("http://");
    for (route, _) in BLOCKING {
        get(addr, route);
    }

    // As docker, systemd or Kubernetes stop a service.
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill -TERM: {}", std::io::Error::last_os_error());
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}\n{stderr}");

    let dir = out.join(format!("http_service-{}", child.id()));
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", dir.join(name).display()))
    };
    let folded = read("stacks.folded");
    let jsonl = read("episodes.jsonl");
    let summary = read("summary.txt");
    let svg = read("flamegraph.svg");
    // finish() ran after SIGTERM: the summary it prints is the file's.
    assert!(rest.contains("blocking episode"), "{rest}");
    for (route, function) in BLOCKING {
        for (name, text) in [("stacks.folded", &folded), ("episodes.jsonl", &jsonl)] {
            // The whole story when it fails: it has failed once, in 1 of
            // 10 runs on a saturated machine, with the site in the summary.
            let route_lines: Vec<&str> = jsonl
                .lines()
                .filter(|l| l.contains(&format!("\"label\":\"GET {route}\"")))
                .collect();
            assert!(
                text.contains(function),
                "{function} ({route}) not in {name}:\n{summary}\n--- stacks.folded:\n{folded}\n--- episodes of GET {route}:\n{}",
                route_lines.join("\n")
            );
        }
        assert!(
            svg.contains(&format!("GET {route}")),
            "GET {route} is not a flamegraph root:\n{summary}"
        );
        assert!(
            jsonl.contains(&format!("\"label\":\"GET {route}\"")),
            "no episode labelled GET {route}:\n{summary}"
        );
    }
    for (name, text) in [("stacks.folded", &folded), ("episodes.jsonl", &jsonl)] {
        assert!(
            !text.contains(HEALTHY_HANDLER) && !text.contains("GET /health"),
            "the healthy route is in {name}:\n{summary}"
        );
    }
}

/// Waits for the service to exit after SIGTERM; a service that does not
/// (finish() stuck) is killed and fails the test instead of hanging it.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the service did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the service if the load step panics, so no server outlives the test.
struct KillOnPanic<'a>(&'a mut std::process::Child);

impl Drop for KillOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Puts load on the service for `LOAD_FOR`: wrk with the script's mix when
/// installed, else the same mix from two client threads.
fn drive(url: &str, child: &mut std::process::Child) {
    let _kill_on_panic = KillOnPanic(child);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/loadtest.lua");
    let wrk = Command::new("wrk")
        .args([
            "-t2",
            "-c4",
            &format!("-d{}s", LOAD_FOR.as_secs()),
            "-s",
            script,
            url,
        ])
        .output();
    match wrk {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "wrk failed: {text}");
            assert!(text.contains("requests in"), "{text}");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("POLLWATCH_REQUIRE_WRK").is_none_or(|v| v != "1"),
                "POLLWATCH_REQUIRE_WRK=1 but wrk is not installed"
            );
            let addr = url.trim_start_matches("http://").to_owned();
            let clients: Vec<_> = (0..2)
                .map(|c| {
                    let addr = addr.clone();
                    std::thread::spawn(move || plain_load(&addr, c))
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
        }
        Err(e) => panic!("cannot run wrk: {e}"),
    }
}

fn plain_load(addr: &str, offset: usize) {
    let paths: Vec<&str> = BLOCKING
        .iter()
        .flat_map(|(route, _)| ["/health", route])
        .collect();
    let start = Instant::now();
    let mut i = offset;
    while start.elapsed() < LOAD_FOR {
        get(addr, paths[i % paths.len()]);
        i += 1;
    }
}

/// One GET over its own connection; the reply must be a 200.
fn get(addr: &str, path: &str) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
}
