//! The charts, as hand-written SVG: latency distributions (CDF on a log time
//! axis) and a throughput bar chart.

use std::fmt::Write;

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 1000.0;
const H: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 330.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn head(title: &str, subtitle: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{}</text>
<text x="{LEFT}" y="40" fill="#555">{}</text>
"##,
        esc(title),
        esc(subtitle)
    )
}

fn label_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", v / 1000.0)
    } else {
        format!("{v} ms")
    }
}

/// Cumulative distributions of latency series (sorted, in ms) on a log x axis.
pub fn cdf(title: &str, subtitle: &str, series: &[(String, Vec<f64>)]) -> String {
    let all: Vec<f64> = series.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1e-3);
    let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let (lo, hi) = (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()),
    );
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |v: f64| LEFT + (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) * pw;
    let y = |p: f64| TOP + ph - p / 100.0 * ph;
    let mut s = head(title, subtitle);
    // Grid and axes.
    let mut d = lo;
    while d <= hi * 1.0001 {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            x(d),
            TOP + ph,
            TOP + ph + 16.0,
            label_ms((d * 1e6).round() / 1e6)
        );
        d *= 10.0;
    }
    for p in [0.0, 25.0, 50.0, 75.0, 90.0, 100.0] {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#eee"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">p{p}</text>"##,
            y(p),
            LEFT + pw,
            LEFT - 6.0,
            y(p) + 4.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/><text x="{0:.1}" y="{1:.1}" text-anchor="middle">latency (log scale)</text>"##,
        LEFT + pw / 2.0,
        H - 15.0
    );
    for (i, (name, v)) in series.iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        let c = COLORS[i % COLORS.len()];
        let mut pts = String::new();
        let n = v.len() as f64;
        // At most ~400 points per curve.
        let step = (v.len() / 400).max(1);
        for (j, val) in v.iter().enumerate() {
            if j % step == 0 || j + 1 == v.len() {
                let _ = write!(pts, "{:.1},{:.1} ", x(*val), y((j + 1) as f64 / n * 100.0));
            }
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>"#
        );
        let ly = TOP + 10.0 + i as f64 * 20.0;
        let lx = LEFT + pw + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{0}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{1}" y="{2}">{3}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(&format!("{name} (n={})", v.len()))
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Horizontal bars: (name, value, annotation).
pub fn bars(title: &str, subtitle: &str, unit: &str, bars: &[(String, f64, String)]) -> String {
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9);
    let left = 150.0;
    let pw = W - left - 360.0;
    let bh = 36.0;
    let mut s = head(title, subtitle);
    for (i, (name, v, note)) in bars.iter().enumerate() {
        let y = TOP + 20.0 + i as f64 * (bh + 18.0);
        let w = v / max * pw;
        let c = COLORS[i % COLORS.len()];
        let _ = writeln!(
            s,
            r#"<text x="{0}" y="{1:.1}" text-anchor="end">{2}</text><rect x="{left}" y="{y:.1}" width="{w:.1}" height="{bh}" fill="{c}"/><text x="{3:.1}" y="{1:.1}">{4:.0} {5} {6}</text>"#,
            left - 8.0,
            y + bh / 2.0 + 4.0,
            esc(name),
            left + w + 6.0,
            v,
            esc(unit),
            esc(note)
        );
    }
    s.push_str("</svg>\n");
    s.replace(
        &format!(r#"height="{H}" viewBox="0 0 {W} {H}""#),
        &format!(
            r#"height="{0}" viewBox="0 0 {W} {0}""#,
            TOP + 40.0 + bars.len() as f64 * (bh + 18.0)
        ),
    )
}
