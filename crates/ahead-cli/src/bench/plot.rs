//! The SVG chart of `ahead bench --plot`: speedup over vanilla per method, one bar per group of
//! prompts, with the 1x line. Plain SVG text, no plotting dependency.

use std::fmt::Write;

use super::methods::MethodReport;

/// A colour per group, in order (Tableau 10).
const COLOURS: [&str; 8] = [
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D",
];
const BAR: f64 = 12.0;
const LEFT: f64 = 190.0;
const WIDTH: f64 = 760.0;
const TOP: f64 = 56.0;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub(super) fn speedups_svg(model: &str, groups: &[String], methods: &[MethodReport]) -> String {
    let groups: Vec<(&str, &str)> = groups
        .iter()
        .zip(COLOURS.iter().cycle())
        .map(|(g, c)| (g.as_str(), *c))
        .collect();
    let row = 10.0 + (BAR + 1.0) * groups.len() as f64;
    let max = methods
        .iter()
        .flat_map(|m| m.by_group.values().map(|s| s.speedup_vs_vanilla))
        .fold(1.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let plot_w = WIDTH - LEFT - 70.0;
    let x = |v: f64| LEFT + plot_w * v / max;
    let height = TOP + row * methods.len() as f64 + 40.0;
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
    for (i, (group, color)) in groups.iter().enumerate() {
        let lx = LEFT + i as f64 * 110.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="32" width="12" height="12" fill="{color}"/><text x="{}" y="42">{}</text>"#,
            lx + 16.0,
            esc(group)
        );
    }
    for (i, m) in methods.iter().enumerate() {
        let y = TOP + row * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + row / 2.0,
            esc(&m.method)
        );
        for (j, (group, color)) in groups.iter().enumerate() {
            let Some(v) = m.by_group.get(*group).map(|r| r.speedup_vs_vanilla) else {
                continue;
            };
            let by = y + 4.0 + j as f64 * (BAR + 1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{LEFT}" y="{by}" width="{:.1}" height="12" fill="{color}"/><text x="{:.1}" y="{}" font-size="10">{v:.2}x</text>"#,
                (x(v) - LEFT).max(0.5),
                x(v) + 4.0,
                by + 10.0
            );
        }
    }
    let bottom = TOP + row * methods.len() as f64;
    let _ = writeln!(
        s,
        r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{bottom}" stroke="#333" stroke-dasharray="4 3"/><text x="{0:.1}" y="{1}" text-anchor="middle">1x (vanilla)</text>"##,
        x(1.0),
        bottom + 16.0
    );
    s.push_str("</svg>\n");
    s
}
