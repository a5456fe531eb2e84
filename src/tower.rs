//! tower: watch every request of an HTTP service and name its episodes by
//! route, without `--cfg tokio_unstable`.
//!
//! [`WatchLayer`] wraps each request's response future (and the inner
//! service's `call`) in a watched poll named `METHOD route`, so an episode
//! says which endpoint blocked: the `label` field of `episodes.jsonl`,
//! [`Episode::label`](crate::Episode::label), the summary's longest episodes
//! and the flamegraph's root. Works with any tower-based server (axum,
//! hyper-util, tonic over HTTP).
//!
//! ```
//! use axum::{extract::MatchedPath, routing::get, Router};
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "hi" }))
//!     // `GET /users/{id}`, not one name per id:
//!     .layer(pollwatch::tower::WatchLayer::new().route_from(|ext| {
//!         ext.get::<MatchedPath>().map(MatchedPath::as_str)
//!     }));
//! ```
//!
//! Names are interned once per distinct route and kept for the life of the
//! process (a poll stores a pointer, never a string), at most
//! [`MAX_LABELS`] of them: past that, requests are named by their method
//! alone (`GET *`). Without [`WatchLayer::route_from`] the route is the
//! URI's path, so paths that carry ids use up the names quickly.
//!
//! Only the response future and `call` are watched: work done in the
//! service's `poll_ready`, in the connection's own code, or in a task the
//! handler spawns is outside the request (wrap a spawned task with
//! [`watch`](crate::watch), or build with `--cfg tokio_unstable`).

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::sync::{OnceLock, RwLock};
use std::task::{Context, Poll};

use crate::probe::{self, Entered, Label};

/// How many distinct route names are kept. Each is leaked on purpose (a poll
/// stores a `&'static` to it, and the watchdog may read it at any time), so
/// the bound is what keeps a service hit with random paths from growing.
pub const MAX_LABELS: usize = 1024;

/// Extra names for the per-method fallbacks (`GET *`) once [`MAX_LABELS`]
/// is reached; past these too, the name is `*`.
const FALLBACK_LABELS: usize = 64;

/// Finds a request's route template in its extensions (axum's `MatchedPath`);
/// `None` falls back to the URI's path.
pub type RouteFn = for<'a> fn(&'a http::Extensions) -> Option<&'a str>;

/// A [`tower_layer::Layer`] that watches each request and names its
/// episodes `METHOD route`. See the [module docs](self).
#[derive(Clone, Copy, Debug)]
pub struct WatchLayer {
    location: &'static Location<'static>,
    route: Option<RouteFn>,
}

impl WatchLayer {
    /// A layer naming requests by method and URI path. Episodes' `spawned_at`
    /// is the place this is called.
    #[track_caller]
    pub fn new() -> Self {
        WatchLayer {
            location: Location::caller(),
            route: None,
        }
    }

    /// Takes the route from the request's extensions when `route` finds one
    /// there, such as axum's `MatchedPath` (a template like `/users/{id}`),
    /// which keeps one name per endpoint rather than one per URI.
    pub fn route_from(mut self, route: RouteFn) -> Self {
        self.route = Some(route);
        self
    }
}

impl Default for WatchLayer {
    #[track_caller]
    fn default() -> Self {
        WatchLayer::new()
    }
}

impl<S> tower_layer::Layer<S> for WatchLayer {
    type Service = WatchService<S>;

    fn layer(&self, inner: S) -> WatchService<S> {
        WatchService {
            inner,
            location: self.location,
            route: self.route,
        }
    }
}

/// The service made by [`WatchLayer`].
#[derive(Clone, Debug)]
pub struct WatchService<S> {
    inner: S,
    location: &'static Location<'static>,
    route: Option<RouteFn>,
}

impl<S, B> tower_service::Service<http::Request<B>> for WatchService<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = WatchFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> WatchFuture<S::Future> {
        let route = self
            .route
            .and_then(|f| f(req.extensions()))
            .unwrap_or_else(|| req.uri().path());
        let label = intern(req.method().as_str(), route);
        // A service may do real work in `call` (not only build a future).
        let inner = {
            let _named = NamedPoll::enter(label, self.location);
            self.inner.call(req)
        };
        WatchFuture {
            inner,
            label,
            location: self.location,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's response future, watched and named; made by [`WatchService`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct WatchFuture<F> {
        #[pin]
        inner: F,
        label: &'static String,
        location: &'static Location<'static>,
    }
}

impl<F> WatchFuture<F> {
    /// The name episodes of this request carry (`GET /users/{id}`).
    pub fn label(&self) -> &'static str {
        self.label
    }
}

impl<F: Future> Future for WatchFuture<F> {
    type Output = F::Output;

    // Inlined like `Watched::poll`: the report cuts the stack at this
    // function either way (it is an inlined frame in the debug info).
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _named = NamedPoll::enter(this.label, this.location);
        this.inner.poll(cx)
    }
}

/// A watched poll with a name: sets the thread's label, then enters the
/// poll; on drop (also while unwinding) exits and puts the outer label back.
struct NamedPoll {
    entered: Entered,
    outer: Option<&'static String>,
    _not_send: PhantomData<*const ()>,
}

impl NamedPoll {
    #[inline]
    fn enter(label: &'static String, location: &'static Location<'static>) -> NamedPoll {
        // The label first, so that the epoch's store in `enter` publishes it.
        let outer = probe::swap_label(Some(label));
        let entered = probe::enter(Label {
            task_id: 0,
            location: Some(location),
        });
        NamedPoll {
            entered,
            outer,
            _not_send: PhantomData,
        }
    }
}

impl Drop for NamedPoll {
    #[inline]
    fn drop(&mut self) {
        probe::exit(self.entered);
        probe::swap_label(self.outer);
    }
}

/// The interned names, by hash of (method, route); looked up without
/// allocating, so a known route costs a hash and a read lock per request.
#[derive(Default)]
struct Interner {
    by_hash: HashMap<u64, Vec<&'static String>>,
    len: usize,
}

impl Interner {
    fn get(&self, h: u64, method: &str, route: &str) -> Option<&'static String> {
        self.by_hash
            .get(&h)?
            .iter()
            .copied()
            .find(|l| is_label(l, method, route))
    }

    /// The name for (method, route), added if there is room: up to `cap`
    /// names in all. `None` when full.
    fn get_or_add(&mut self, method: &str, route: &str, cap: usize) -> Option<&'static String> {
        let h = hash(method, route);
        if let Some(l) = self.get(h, method, route) {
            return Some(l);
        }
        if self.len >= cap {
            return None;
        }
        let label: &'static String = Box::leak(Box::new(format!("{method} {route}")));
        self.by_hash.entry(h).or_default().push(label);
        self.len += 1;
        Some(label)
    }
}

fn hash(method: &str, route: &str) -> u64 {
    // Fixed keys: the bound on names, not the hash, keeps a hostile client
    // from costing more than `MAX_LABELS` entries.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    method.hash(&mut h);
    route.hash(&mut h);
    h.finish()
}

/// Whether `label` is `"{method} {route}"`.
fn is_label(label: &str, method: &str, route: &str) -> bool {
    label.len() == method.len() + 1 + route.len()
        && label.starts_with(method)
        && label.as_bytes()[method.len()] == b' '
        && label.ends_with(route)
}

fn interner() -> &'static RwLock<Interner> {
    static LABELS: OnceLock<RwLock<Interner>> = OnceLock::new();
    LABELS.get_or_init(Default::default)
}

/// The interned name for a request: `METHOD route`, or a fallback once
/// [`MAX_LABELS`] names exist.
fn intern(method: &str, route: &str) -> &'static String {
    let lock = interner();
    let h = hash(method, route);
    if let Some(l) = lock
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(h, method, route)
    {
        return l;
    }
    let mut w = lock.write().unwrap_or_else(|p| p.into_inner());
    w.get_or_add(method, route, MAX_LABELS)
        .or_else(|| w.get_or_add(method, "*", MAX_LABELS + FALLBACK_LABELS))
        .unwrap_or_else(|| {
            static ANY: OnceLock<&'static String> = OnceLock::new();
            ANY.get_or_init(|| Box::leak(Box::new("*".to_owned())))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interned_once_per_route() {
        let a = intern("GET", "/tower-test/a");
        let b = intern("GET", "/tower-test/a");
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, "GET /tower-test/a");
        assert!(!std::ptr::eq(a, intern("POST", "/tower-test/a")));
    }

    #[test]
    fn a_full_interner_falls_back_to_the_method_then_to_a_star() {
        let mut i = Interner::default();
        assert_eq!(i.get_or_add("GET", "/a", 2).unwrap(), "GET /a");
        assert_eq!(i.get_or_add("GET", "/b", 2).unwrap(), "GET /b");
        assert!(i.get_or_add("GET", "/c", 2).is_none());
        // Known names are still found when full.
        assert_eq!(i.get_or_add("GET", "/a", 2).unwrap(), "GET /a");
        assert_eq!(i.get_or_add("GET", "*", 3).unwrap(), "GET *");
        assert!(i.get_or_add("PUT", "*", 3).is_none());
    }

    #[test]
    fn a_label_is_matched_exactly() {
        assert!(is_label("GET /a", "GET", "/a"));
        assert!(!is_label("GET /ab", "GET", "/a"));
        assert!(!is_label("GETX/a", "GET", "/a"));
        assert!(!is_label("GE /a", "GET", "/a"));
        // Same length, split elsewhere: method "GE", route "T /a" would be "GE T /a".
        assert!(!is_label("GET /a", "GE", "T/a"));
    }
}
