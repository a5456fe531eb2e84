//! `flamegraph.svg`: the folded stacks drawn by inferno, titled with the
//! threshold, the episode count and the blocked time; a plain page of our own
//! when nothing blocked (inferno draws an error for empty input).

use std::collections::BTreeMap;

use super::summary::ms;
use super::Report;

/// The SVG for `report`, whose folded stacks are `folded`.
pub(crate) fn svg(report: &Report, folded: &BTreeMap<String, u64>) -> Vec<u8> {
    let lines: Vec<String> = folded
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(l, w)| format!("{l} {w}"))
        .collect();
    if lines.is_empty() {
        return empty_svg(report).into_bytes();
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = format!(
        "pollwatch: {} blocking episode{}, {} ms blocked",
        report.total_episodes,
        if report.total_episodes == 1 { "" } else { "s" },
        report.total_blocked.as_millis()
    );
    opts.subtitle = Some(format!(
        "polls longer than {} ms; width = blocked time (µs); root = task spawn site or thread",
        ms(report.threshold)
    ));
    opts.count_name = "µs".into();
    // Colors from the names, so one input always draws the same picture.
    opts.hash = true;
    opts.colors =
        inferno::flamegraph::color::Palette::Multi(inferno::flamegraph::color::MultiPalette::Rust);
    let mut out = Vec::new();
    match inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut out) {
        Ok(()) => out,
        Err(e) => empty_svg_with(&format!("flamegraph rendering failed: {e}")).into_bytes(),
    }
}

fn empty_svg(report: &Report) -> String {
    empty_svg_with(&format!(
        "No blocking found: no poll took longer than {} ms.",
        ms(report.threshold)
    ))
}

fn empty_svg_with(message: &str) -> String {
    let esc = super::clean(message)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="800" height="120" xmlns="http://www.w3.org/2000/svg">
<rect x="0" y="0" width="100%" height="100%" fill="rgb(250,250,250)"/>
<text x="400" y="40" font-size="17" font-family="Verdana" text-anchor="middle">pollwatch</text>
<text x="400" y="75" font-size="13" font-family="Verdana" text-anchor="middle">{esc}</text>
</svg>
"#
    )
}
