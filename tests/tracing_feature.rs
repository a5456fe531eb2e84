//! With the `tracing` feature, the live lines are also `tracing::warn!`
//! events (target `pollwatch`), so they land wherever the host's logs go.
#![cfg(feature = "tracing")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Collects the message of every WARN event from target `pollwatch`.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target() == "pollwatch" && *m.level() == Level::WARN
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut m = Message(String::new());
        e.record(&mut m);
        self.0.lock().unwrap().push(m.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn live_lines_are_tracing_warnings() {
    let _s = serial();
    let events = Collect::default();
    // The report thread emits the events: install the collector globally.
    tracing::subscriber::set_global_default(events.clone()).unwrap();
    let guard = config("tracing").start().unwrap();
    std::thread::spawn(|| {
        let _poll = pollwatch::enter_poll();
        blocking_sleep(Duration::from_millis(100));
    })
    .join()
    .unwrap();
    guard.finish().unwrap();
    let seen = events.0.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|m| m.contains("in one poll") && m.contains("blocking_sleep")),
        "{seen:#?}"
    );
    assert!(seen.iter().any(|m| m.contains("ended after")), "{seen:#?}");
}
