//! The getters say what `episodes.jsonl` says: `Episode::id`,
//! `missed_samples` and `ended_by`, and `Report::total_episodes`, on a real
//! run with real blocking.

mod support;

use std::time::Duration;

use pollwatch::EndedBy;
use support::*;

#[test]
fn getters_agree_with_episodes_jsonl() {
    let _s = serial();
    let guard = config("api_getters").live(false).start().unwrap();
    let rt = tokio_runtime(2);
    rt.block_on(async {
        for _ in 0..2 {
            tokio::spawn(pollwatch::watch(async {
                tokio::task::yield_now().await;
                blocking_sleep(Duration::from_millis(80))
            }))
            .await
            .unwrap();
        }
    });
    drop(rt);
    let report = guard.finish().unwrap();

    let path = report.episodes_path().expect("an output directory");
    #[allow(deprecated)]
    let old = report.events_path();
    assert_eq!(old.as_ref(), Some(&path), "the deprecated name still works");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let eps = report.blocked_in("blocking_sleep").count();
    assert_eq!(eps, 2, "{report}");
    assert_eq!(report.total_episodes(), lines.len() as u64, "{report}");
    assert_eq!(report.total_episodes(), report.episodes().len() as u64);

    let mut ids: Vec<u64> = report.episodes().iter().map(|e| e.id()).collect();
    for ep in report.episodes() {
        let line = lines
            .iter()
            .find(|l| l["id"].as_u64() == Some(ep.id()))
            .unwrap_or_else(|| panic!("no line with id {}: {lines:?}", ep.id()));
        assert_eq!(
            line["missed_samples"].as_u64(),
            Some(u64::from(ep.missed_samples()))
        );
        assert_eq!(line["ended_by"].as_str(), Some(ep.ended_by().as_str()));
        // Whether it is right (every poll here returned before finish()) is
        // the watchdog's business, tested with it; here only that the getter
        // and the file agree, on a known value.
        assert_ne!(ep.ended_by(), EndedBy::Unknown, "{line}");
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), report.episodes().len(), "ids are distinct");
}
