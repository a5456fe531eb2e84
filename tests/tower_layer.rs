//! `pollwatch::tower::WatchLayer` on a real axum server over loopback: each
//! request is watched without `--cfg tokio_unstable`, and its episodes carry
//! the route in `Episode::label`, `episodes.jsonl` and the flamegraph root.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::routing::get;
use axum::Router;
use support::*;

#[inline(never)]
async fn healthy() -> &'static str {
    "ok"
}

#[inline(never)]
async fn blocking_user_lookup() -> String {
    let took = blocking_sleep(Duration::from_millis(100));
    format!("{}", took.as_millis())
}

/// Serves `app` on a loopback port, sends each request in `paths` (GET, one
/// connection each) and stops the server; returns the report.
fn serve_and_get(test: &str, app: Router, paths: &[&str]) -> pollwatch::Report {
    let guard = config(test).start().unwrap();
    let rt = tokio_runtime(2);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    for path in paths {
        let reply = http_get(addr, path);
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
    }
    let _ = stop.send(());
    rt.block_on(server).unwrap().unwrap();
    drop(rt);
    guard.finish().unwrap()
}

/// One GET over a fresh connection, from a plain thread (not a worker).
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn episodes_carry_the_matched_route() {
    let _s = serial();
    let app = Router::new()
        .route("/healthy", get(healthy))
        .route("/users/{id}", get(blocking_user_lookup))
        .layer(
            pollwatch::tower::WatchLayer::new()
                .route_from(|ext| ext.get::<MatchedPath>().map(MatchedPath::as_str)),
        );
    let report = serve_and_get("tower_route", app, &["/healthy", "/users/42", "/healthy"]);
    let ep = episode_in(&report, "blocking_user_lookup");
    assert_eq!(ep.label(), Some("GET /users/{id}"), "{ep:?}");
    assert!(
        ep.spawned_at().unwrap().contains("tower_layer.rs"),
        "spawned_at is where the layer was made: {ep:?}"
    );
    assert!(!report.blocked_in("healthy").any(|_| true), "{report}");
    // The stack starts at the request's future: the connection's frames
    // (hyper's) outside the layer are cut off.
    let frames = ep.frames();
    assert!(
        frames
            .iter()
            .any(|f| f.function.contains("blocking_user_lookup")),
        "{ep:?}"
    );
    assert!(
        !frames.iter().any(|f| f.function.contains("hyper")),
        "connection frames left in {ep:?}"
    );

    let jsonl = artifact(&report, "episodes.jsonl");
    let line: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(line["label"], "GET /users/{id}", "{jsonl}");
    let folded = artifact(&report, "stacks.folded");
    assert!(
        folded.lines().all(|l| l.starts_with("GET /users/{id};")),
        "{folded}"
    );
    assert!(artifact(&report, "flamegraph.svg").contains("GET /users/{id}"));
    // The summary names the route, then the task (`task N spawned at` with
    // tokio_unstable's hooks, `the future watched at` without).
    let summary = report.to_string();
    assert!(summary.contains("GET /users/{id} ("), "{summary}");
    assert!(summary.contains("tower_layer.rs:"), "{summary}");
}

#[test]
fn without_a_route_fn_the_uri_path_names_the_request() {
    let _s = serial();
    let app = Router::new()
        .route("/users/{id}", get(blocking_user_lookup))
        .layer(pollwatch::tower::WatchLayer::new());
    let report = serve_and_get("tower_path", app, &["/users/7"]);
    let ep = episode_in(&report, "blocking_user_lookup");
    assert_eq!(ep.label(), Some("GET /users/7"), "{ep:?}");
}

#[test]
fn unnamed_polls_have_no_label() {
    let _s = serial();
    let (report, _) = caught("tower_unnamed", || {
        blocking_sleep(Duration::from_millis(100))
    });
    let ep = episode_in(&report, "blocking_sleep");
    assert_eq!(ep.label(), None, "{ep:?}");
    let jsonl = artifact(&report, "episodes.jsonl");
    let line: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert!(line["label"].is_null(), "{jsonl}");
}
