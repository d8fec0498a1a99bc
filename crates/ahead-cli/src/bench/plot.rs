//! The SVG chart of `ahead bench --plot`: speedup over vanilla per method, one bar per suite,
//! with the 1x line. Plain SVG text, no plotting dependency.

use std::fmt::Write;

use super::methods::MethodReport;

const SUITES: [(&str, &str); 2] = [("stories", "#4C78A8"), ("code", "#F58518")];
const ROW: f64 = 34.0;
const LEFT: f64 = 190.0;
const WIDTH: f64 = 760.0;
const TOP: f64 = 56.0;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub(super) fn speedups_svg(model: &str, methods: &[MethodReport]) -> String {
    let max = methods
        .iter()
        .flat_map(|m| m.suites.values().map(|s| s.speedup_vs_vanilla))
        .fold(1.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let plot_w = WIDTH - LEFT - 70.0;
    let x = |v: f64| LEFT + plot_w * v / max;
    let height = TOP + ROW * methods.len() as f64 + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">Speedup over vanilla: {}</text>"#,
        esc(model)
    );
    for (i, (suite, color)) in SUITES.iter().enumerate() {
        let lx = LEFT + i as f64 * 110.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="32" width="12" height="12" fill="{color}"/><text x="{}" y="42">{suite}</text>"#,
            lx + 16.0
        );
    }
    for (i, m) in methods.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + ROW / 2.0,
            esc(&m.method)
        );
        for (j, (suite, color)) in SUITES.iter().enumerate() {
            let Some(v) = m.suites.get(*suite).map(|r| r.speedup_vs_vanilla) else {
                continue;
            };
            let by = y + 4.0 + j as f64 * 13.0;
            let _ = writeln!(
                s,
                r#"<rect x="{LEFT}" y="{by}" width="{:.1}" height="12" fill="{color}"/><text x="{:.1}" y="{}" font-size="10">{v:.2}x</text>"#,
                (x(v) - LEFT).max(0.5),
                x(v) + 4.0,
                by + 10.0
            );
        }
    }
    let bottom = TOP + ROW * methods.len() as f64;
    let _ = writeln!(
        s,
        r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{bottom}" stroke="#333" stroke-dasharray="4 3"/><text x="{0:.1}" y="{1}" text-anchor="middle">1x (vanilla)</text>"##,
        x(1.0),
        bottom + 16.0
    );
    s.push_str("</svg>\n");
    s
}
