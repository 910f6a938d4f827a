//! The charts, as hand-written SVG: latency distributions (CDF on a log time
//! axis), a throughput bar chart, and lines over time.

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

/// One line of a [`timeline`]: (x, y) points in x order.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// A round step for an axis from 0 to `max` with about 6 ticks (1, 2 or 5 times
/// a power of ten).
fn tick_step(max: f64) -> f64 {
    let raw = (max / 6.0).max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// The ticks 0, step, 2 step, ... up to `max`.
fn ticks(max: f64, step: f64) -> impl Iterator<Item = f64> {
    let n = (max / step).round() as u32;
    (0..=n).map(move |k| f64::from(k) * step)
}

/// A tick's label, without float noise (0.30000000000000004).
fn round_label(v: f64) -> String {
    format!("{}", (v * 1e6).round() / 1e6)
}

/// Lines over a shared x axis from 0: `lines` against the left y axis, and
/// `right` (if any) in grey against its own right y axis, both from 0.
pub fn timeline(
    title: &str,
    subtitle: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line],
    right: Option<(&str, &Line)>,
) -> String {
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let max_of = |ls: &mut dyn Iterator<Item = &Line>, f: fn(&(f64, f64)) -> f64| {
        ls.flat_map(|l| l.points.iter().map(f))
            .fold(0.0, f64::max)
            .max(1e-9)
    };
    let x_max = max_of(&mut lines.iter().chain(right.map(|r| r.1)), |p| p.0);
    let x_step = tick_step(x_max);
    let x_max = (x_max / x_step).ceil() * x_step;
    let y_step = tick_step(max_of(&mut lines.iter(), |p| p.1));
    let y_max = (max_of(&mut lines.iter(), |p| p.1) / y_step).ceil() * y_step;
    let x = |v: f64| LEFT + v / x_max * pw;
    let y = |v: f64, top: f64| TOP + ph - v / top * ph;
    let mut s = head(title, subtitle);
    for v in ticks(x_max, x_step) {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#eee"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            x(v),
            TOP + ph,
            TOP + ph + 16.0,
            round_label(v)
        );
    }
    for v in ticks(y_max, y_step) {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#eee"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            y(v, y_max),
            LEFT + pw,
            LEFT - 6.0,
            y(v, y_max) + 4.0,
            round_label(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/><text x="{0:.1}" y="{1:.1}" text-anchor="middle">{2}</text><text x="18" y="{3:.1}" text-anchor="middle" transform="rotate(-90 18 {3:.1})">{4}</text>"##,
        LEFT + pw / 2.0,
        H - 15.0,
        esc(x_label),
        TOP + ph / 2.0,
        esc(y_label)
    );
    let polyline = |l: &Line, top: f64, color: &str, width: f64| {
        let mut pts = String::new();
        for (px, py) in &l.points {
            let _ = write!(pts, "{:.1},{:.1} ", x(*px), y(*py, top));
        }
        let dash = if l.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="{width}"{dash} points="{pts}"/>"#
        )
    };
    let lx = LEFT + pw + 50.0;
    let mut legend = 0;
    let mut key = |s: &mut String, name: &str, color: &str, dashed: bool| {
        let ly = TOP + 10.0 + legend as f64 * 20.0;
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{0}" y2="{ly}" stroke="{color}" stroke-width="3"{dash}/><text x="{1}" y="{2}">{3}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(name)
        );
        legend += 1;
    };
    if let Some((label, r)) = right {
        let top_raw = max_of(&mut std::iter::once(r), |p| p.1);
        let step = tick_step(top_raw);
        let top = (top_raw / step).ceil() * step;
        for v in ticks(top, step) {
            let _ = writeln!(
                s,
                r##"<text x="{0:.1}" y="{1:.1}" fill="#777">{2}</text>"##,
                LEFT + pw + 6.0,
                y(v, top) + 4.0,
                round_label(v)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{0:.1}" y="{1:.1}" fill="#777" text-anchor="middle" transform="rotate(90 {0:.1} {1:.1})">{2}</text>"##,
            LEFT + pw + 38.0,
            TOP + ph / 2.0,
            esc(label)
        );
        s.push_str(&polyline(r, top, "#bbb", 1.0));
        s.push('\n');
        key(&mut s, &r.name, "#bbb", r.dashed);
    }
    for (i, l) in lines.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        s.push_str(&polyline(l, y_max, c, 1.6));
        s.push('\n');
        key(&mut s, &l.name, c, l.dashed);
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(110.0), 20.0);
        assert_eq!(tick_step(24.0), 5.0);
        assert_eq!(tick_step(9.0), 2.0);
        assert_eq!(tick_step(3.0), 0.5);
    }

    #[test]
    fn a_timeline_draws_every_line_and_its_key() {
        let l = |name: &str, dashed| Line {
            name: name.into(),
            points: vec![(0.0, 1.0), (10.0, 5.0)],
            dashed,
        };
        let r = l("rate", false);
        let s = timeline(
            "t",
            "s",
            "x",
            "y",
            &[l("a", false), l("b", true)],
            Some(("r", &r)),
        );
        assert_eq!(s.matches("<polyline").count(), 3);
        assert!(s.contains(">a</text>") && s.contains(">b</text>") && s.contains(">rate</text>"));
        assert!(s.ends_with("</svg>\n"));
    }
}
