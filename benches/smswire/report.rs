//! Figures, their targets from issue 6, the console lines and the generated part of
//! BENCHMARKS.md.
//!
//! The harness owns only the block between `<!-- results:start -->` and
//! `<!-- results:end -->`; inside it each scenario has its own marked section, so running one
//! scenario replaces that scenario's section and keeps the others (each says when it ran).
//! The prose around the block is written by people.

use std::path::Path;

use crate::Res;
use crate::machine::Machine;

/// A target of issue 6 for one figure.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Goal::AtLeast(t) => value >= t,
            Goal::AtMost(t) => value <= t,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Goal::AtLeast(t) => format!("≥ {} {unit}", number(t)),
            Goal::AtMost(t) => format!("≤ {} {unit}", number(t)),
        }
    }
}

/// One measured figure: the median of its runs.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub goal: Option<Goal>,
    /// Every run's value, when there were several.
    pub runs: Vec<f64>,
    pub note: String,
}

impl Figure {
    /// A figure from the values of several runs (their median).
    pub fn median(name: impl Into<String>, unit: &'static str, runs: Vec<f64>) -> Figure {
        Figure {
            name: name.into(),
            value: median(&runs),
            unit,
            goal: None,
            runs: if runs.len() > 1 { runs } else { Vec::new() },
            note: String::new(),
        }
    }

    /// A figure measured once.
    pub fn once(name: impl Into<String>, unit: &'static str, value: f64) -> Figure {
        Figure::median(name, unit, vec![value])
    }

    pub fn goal(mut self, goal: Goal) -> Figure {
        self.goal = Some(goal);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }

    fn verdict(&self) -> &'static str {
        match self.goal {
            Some(g) if g.met(self.value) => "met",
            Some(_) => "**not met**",
            None => "",
        }
    }

    /// The console line.
    pub fn print(&self) {
        let runs = if self.runs.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self.runs.iter().map(|v| number(*v)).collect();
            format!("  (runs: {})", list.join(", "))
        };
        let goal = self
            .goal
            .map(|g| format!("  [target {}: {}]", g.text(self.unit), self.verdict()))
            .unwrap_or_default();
        let note = if self.note.is_empty() {
            String::new()
        } else {
            format!("  - {}", self.note)
        };
        println!(
            "  {:<52} {:>12} {:<8}{runs}{goal}{note}",
            self.name,
            number(self.value),
            self.unit
        );
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// A number written for people: thousands separated, precision by size.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v.abs() >= 100.0 {
        let rounded = v.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if rounded < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The results of one scenario in one run of the harness.
pub struct Section {
    pub key: &'static str,
    pub title: &'static str,
    pub figures: Vec<Figure>,
    /// Set when the scenario could not run; printed instead of a table.
    pub skipped: Option<String>,
    /// One core's SHA-256 speed just before the scenario ran, in MB/s (see
    /// `machine::cpu_speed`).
    pub cpu_mbps: f64,
}

const START: &str = "<!-- results:start -->";
const END: &str = "<!-- results:end -->";

/// What one run of the harness was: where, when, how, on which build.
pub struct Run<'a> {
    pub machine: &'a Machine,
    pub fsync_rate: f64,
    pub date: &'a str,
    pub command: &'a str,
    pub build: &'a str,
}

/// Writes `sections` into the results block of `path` (created if missing), keeping the
/// sections of scenarios that did not run this time.
pub fn update_file(path: &Path, run: &Run<'_>, sections: &[Section]) -> Res<()> {
    let (machine, fsync_rate, date) = (run.machine, run.fsync_rate, run.date);
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (before, block, after) = match (text.find(START), text.find(END)) {
        (Some(s), Some(e)) if s < e => (
            text[..s].to_string(),
            text[s + START.len()..e].to_string(),
            text[e + END.len()..].to_string(),
        ),
        _ => (
            format!("{}\n\n## Results\n\n", text.trim_end()),
            String::new(),
            "\n".to_string(),
        ),
    };

    let mut out = String::new();
    out.push_str(START);
    out.push_str("\n\n");
    out.push_str(&format!(
        "Last run: {date}, `{}`, binary built from {}.\n\n\
         Machine of the last run: {} cores, {} RAM, Linux {}, {}; benchmark files on {} \
         (same disk as `target/`); raw disk rate measured by the harness: **{} fsyncs/s** \
         (4 KiB write + fdatasync, next to the redb files).\n\n",
        run.command,
        run.build,
        machine.cores,
        machine.memory,
        machine.kernel,
        machine.cpu,
        machine.filesystem,
        number(fsync_rate)
    ));
    for key in crate::SCENARIOS {
        if let Some(section) = sections.iter().find(|s| s.key == *key) {
            out.push_str(&render(section, date, run.build, machine, fsync_rate));
        } else if let Some(old) = old_section(&block, key) {
            out.push_str(&old);
        }
    }
    out.push_str(END);
    std::fs::write(path, format!("{before}{out}{after}"))?;
    Ok(())
}

fn markers(key: &str) -> (String, String) {
    (
        format!("<!-- scenario:{key} -->"),
        format!("<!-- /scenario:{key} -->"),
    )
}

fn old_section(block: &str, key: &str) -> Option<String> {
    let (open, close) = markers(key);
    let s = block.find(&open)?;
    let e = block[s..].find(&close)? + s + close.len();
    Some(format!("{}\n\n", &block[s..e]))
}

fn render(
    section: &Section,
    date: &str,
    build: &str,
    machine: &Machine,
    fsync_rate: f64,
) -> String {
    let (open, close) = markers(section.key);
    let mut out = format!(
        "{open}\n### {}\n\nRun {date} ({build}) on {} cores / {} / disk {} fsyncs/s / one \
         core's SHA-256 {} MB/s just before.\n\n",
        section.title,
        machine.cores,
        machine.cpu,
        number(fsync_rate),
        number(section.cpu_mbps)
    );
    if let Some(reason) = &section.skipped {
        out.push_str(&format!("**Skipped:** {reason}\n\n{close}\n\n"));
        return out;
    }
    out.push_str("| figure | value | unit | runs | target (issue 6) | met? | note |\n");
    out.push_str("|---|---:|---|---|---|---|---|\n");
    for f in &section.figures {
        let runs: Vec<String> = f.runs.iter().map(|v| number(*v)).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            f.name,
            number(f.value),
            f.unit,
            runs.join(", "),
            f.goal.map(|g| g.text(f.unit)).unwrap_or_default(),
            f.verdict(),
            f.note.replace('|', "/"),
        ));
    }
    out.push('\n');
    out.push_str(&close);
    out.push_str("\n\n");
    out
}
