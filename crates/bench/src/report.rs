//! The results: one row per measured case, printed as a table on stdout and
//! written as JSON for machines.

use serde::Serialize;

use crate::stats::Summary;

/// One measured case.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    /// Scenario number and name, e.g. "1 warm claim".
    pub scenario: String,
    pub case: String,
    /// Latency percentiles, where the case is a latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Summary>,
    /// A single figure (throughput, a duration, memory), with its unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// This case against its same-run baseline, and what the baseline is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// The goal of the issue this case is reported against, and whether it is met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

impl Row {
    pub fn new(scenario: &str, case: impl Into<String>) -> Row {
        Row {
            scenario: scenario.to_owned(),
            case: case.into(),
            ..Default::default()
        }
    }

    pub fn latency(mut self, s: Summary) -> Row {
        self.latency = Some(s);
        self
    }

    pub fn value(mut self, v: f64, unit: &str) -> Row {
        self.value = Some(v);
        self.unit = Some(unit.to_owned());
        self
    }

    pub fn ratio(mut self, r: f64, baseline: &str) -> Row {
        if r.is_finite() {
            self.ratio = Some(r);
            self.baseline = Some(baseline.to_owned());
        }
        self
    }

    pub fn goal(mut self, goal: &str, met: bool) -> Row {
        self.goal = Some(goal.to_owned());
        self.met = Some(met);
        self
    }
}

/// Everything the JSON file holds.
#[derive(Debug, Serialize)]
pub struct Report {
    pub quick: bool,
    /// Seconds since the Unix epoch when the run started.
    pub started_at: u64,
    pub build: Build,
    pub machine: Machine,
    pub rows: Vec<Row>,
    /// Cases skipped or caveats, in words.
    pub notes: Vec<String>,
    /// Scenario 8's runs (one per runtime), in full.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub demand: Vec<crate::demand::DemandRun>,
    pub seconds: f64,
}

/// What was measured: the commit the binary was built from and its profile.
#[derive(Debug, Serialize)]
pub struct Build {
    /// `git rev-parse --short=12 HEAD` when built ("unknown" outside git).
    pub commit: &'static str,
    /// `release` or `debug` (figures from a debug build are not comparable).
    pub profile: &'static str,
}

impl Build {
    pub fn this() -> Build {
        Build {
            commit: env!("WARMPOOL_BUILD_COMMIT"),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// `/proc/loadavg` (1, 5, 15 minutes) when read: how busy the machine was.
    pub load_average: String,
}

impl Machine {
    pub fn read() -> Machine {
        let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.3}")
    } else if v < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The human table (latencies in ms).
pub fn table(rows: &[Row]) -> String {
    let header = [
        "SCENARIO",
        "CASE",
        "N",
        "MEDIAN ms",
        "P90 ms",
        "P99 ms",
        "MAX ms",
        "VALUE",
        "RATIO",
        "GOAL",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let l = r.latency.as_ref();
            let lat = |f: fn(&Summary) -> f64| l.map(|s| ms(f(s))).unwrap_or_default();
            vec![
                r.scenario.clone(),
                r.case.clone(),
                l.map(|s| s.n.to_string()).unwrap_or_default(),
                lat(|s| s.median_ms),
                lat(|s| s.p90_ms),
                lat(|s| s.p99_ms),
                lat(|s| s.max_ms),
                r.value
                    .map(|v| format!("{} {}", num(v), r.unit.as_deref().unwrap_or("")))
                    .unwrap_or_default(),
                r.ratio
                    .map(|v| format!("{} {}", num(v), r.baseline.as_deref().unwrap_or("")))
                    .unwrap_or_default(),
                match (&r.goal, r.met) {
                    (Some(g), Some(true)) => format!("met: {g}"),
                    (Some(g), _) => format!("MISSED: {g}"),
                    _ => String::new(),
                },
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                // Numbers right-aligned, words left-aligned.
                if (2..=6).contains(&i) {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.push_str(s.join("  ").trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    let mut last = String::new();
    for (r, c) in rows.iter().zip(&cells) {
        let mut c = c.clone();
        if r.scenario == last {
            c[0] = String::new();
        }
        last = r.scenario.clone();
        line(&c);
    }
    out
}
