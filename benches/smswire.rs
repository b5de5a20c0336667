//! smswire's benchmark harness (issue 6; how to read the figures: BENCHMARKS.md).
//!
//! `cargo bench --bench smswire` builds the release binary, starts it as a separate process
//! on generated configurations, drives it with the load generator in `load.rs`, prints every
//! figure with its unit and writes the results into BENCHMARKS.md. Arguments after `--`:
//!
//! - scenario names (`accept e2e backlog timer smpp idle kannel`) to run only those;
//! - `--quick`: a tiny smoke run for CI (well under a minute, asserts no timing, writes no
//!   file);
//! - `--runs N` (default 3), `--secs S` (length of one accept run, default 5),
//!   `--e2e-secs S` (default 60), `--e2e-rate R` (hold R msg/s, no search), `--backlog N` (deliveries, default 1000000),
//!   `--drain-secs S` (longest drain, default 30), `--threads N` (the harness's tokio
//!   workers, default 2), `--per-webhook N` (override `[webhooks] per_webhook_concurrency`
//!   where webhooks are called, to explore; results are then not the reference ones),
//!   `--commit-delay-us N` (override `[store] commit_delay_us` in every daemon, likewise),
//!   `--no-write` (print only).

#[path = "smswire/daemon.rs"]
mod daemon;
#[path = "smswire/load.rs"]
mod load;
#[path = "smswire/machine.rs"]
mod machine;
#[path = "smswire/receiver.rs"]
mod receiver;
#[path = "smswire/report.rs"]
mod report;
#[path = "smswire/scenarios.rs"]
mod scenarios;
#[path = "smswire/smsc.rs"]
mod smsc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Errors of the harness: anything that can be shown.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Every scenario, in the order they run and appear in BENCHMARKS.md.
pub const SCENARIOS: &[&str] = &[
    "accept", "e2e", "backlog", "timer", "smpp", "idle", "kannel",
];

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub scenarios: Vec<String>,
    pub quick: bool,
    pub runs: usize,
    pub secs: f64,
    pub e2e_secs: f64,
    /// Hold this rate in the end-to-end scenario instead of searching for one (to compare
    /// two builds at the same load).
    pub e2e_rate: Option<f64>,
    pub backlog: u64,
    pub drain_secs: f64,
    pub threads: usize,
    /// `[webhooks] per_webhook_concurrency` for the scenarios with webhooks; `None` keeps
    /// the daemon's default (to explore what limits delivery, not for the reference run).
    pub per_webhook: Option<usize>,
    /// Only smswire's half of the side-by-side scenario (to compare two builds at once,
    /// which two Kannel halves of unequal length would pull out of step).
    pub without_kannel: bool,
    pub write: bool,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut o = Options {
            scenarios: Vec::new(),
            quick: false,
            runs: 3,
            secs: 5.0,
            e2e_secs: 60.0,
            e2e_rate: None,
            backlog: 1_000_000,
            drain_secs: 30.0,
            threads: 2,
            per_webhook: None,
            without_kannel: false,
            write: true,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .ok_or_else(|| format!("{name} needs a value"))
                    .and_then(|v| {
                        v.parse::<f64>()
                            .map_err(|_| format!("{name}: not a number: {v}"))
                    })
            };
            match arg.as_str() {
                // cargo bench passes --bench to every bench binary.
                "--bench" => {}
                "--quick" => o.quick = true,
                "--no-write" => o.write = false,
                "--runs" => o.runs = value("--runs")?.max(1.0) as usize,
                "--secs" => o.secs = value("--secs")?,
                "--e2e-secs" => o.e2e_secs = value("--e2e-secs")?,
                "--e2e-rate" => o.e2e_rate = Some(value("--e2e-rate")?.max(1.0)),
                "--backlog" => o.backlog = value("--backlog")? as u64,
                "--drain-secs" => o.drain_secs = value("--drain-secs")?,
                "--threads" => o.threads = value("--threads")?.max(1.0) as usize,
                "--per-webhook" => o.per_webhook = Some(value("--per-webhook")?.max(1.0) as usize),
                "--commit-delay-us" => {
                    daemon::override_commit_delay(value("--commit-delay-us")?.max(0.0) as u64)
                }
                "--without-kannel" => {
                    o.without_kannel = true;
                    o.write = false;
                }
                "--binary" => {
                    let path = args.next().ok_or("--binary needs a path")?;
                    let path = std::path::PathBuf::from(path);
                    if !path.is_file() {
                        return Err(format!("--binary: no such file: {}", path.display()));
                    }
                    daemon::override_binary(path);
                    // Not the build of this checkout: its figures are not the reference.
                    o.write = false;
                }
                "--help" | "-h" => {
                    return Err(
                        "usage: cargo bench --bench smswire -- [SCENARIO...] [--quick] \
                         [--runs N] [--secs S] [--e2e-secs S] [--e2e-rate R] [--backlog N] [--drain-secs S] \
                         [--threads N] [--per-webhook N] [--commit-delay-us N] [--binary PATH] [--without-kannel] [--no-write]"
                            .into(),
                    );
                }
                name if SCENARIOS.contains(&name) => o.scenarios.push(name.to_string()),
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; scenarios are {}",
                        SCENARIOS.join(", ")
                    ));
                }
            }
        }
        if o.quick {
            // Tiny and fast: enough to prove every path still works, nothing to judge.
            o.runs = 1;
            o.secs = 1.0;
            o.e2e_secs = 2.0;
            o.backlog = o.backlog.min(2_000);
            o.drain_secs = o.drain_secs.min(3.0);
            o.write = false;
        }
        if o.scenarios.is_empty() {
            o.scenarios = SCENARIOS.iter().map(|s| s.to_string()).collect();
        }
        Ok(o)
    }
}

fn main() {
    let options = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build();
    let code = match runtime {
        Ok(rt) => match rt.block_on(run(options)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("benchmark failed: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}

async fn run(options: Options) -> Res<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Cargo's per-target scratch folder sits in target/, on the same disk as the build, and
    // is never tmpfs unless target/ itself is.
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&scratch)?;
    let work = tempfile::Builder::new()
        .prefix("smswire-bench-")
        .tempdir_in(&scratch)?;
    let machine = machine::Machine::detect(work.path());
    if machine.filesystem == "tmpfs" || machine.filesystem == "ramfs" {
        println!(
            "warning: {} is on {}: fsync costs nothing there, so accept figures will be far \
             above what a disk gives",
            work.path().display(),
            machine.filesystem
        );
    }
    let build = if daemon::binary_given() {
        "given with --binary".to_string()
    } else {
        build_of(&root)
    };
    println!(
        "smswire benchmarks, binary {} ({build})",
        daemon::binary().display()
    );
    println!("machine: {}", machine.summary());
    let fsync_secs = if options.quick { 0.3 } else { 2.0 };
    let fsync_rate = machine::fsync_rate(work.path(), Duration::from_secs_f64(fsync_secs))?;
    println!(
        "disk: {} fsyncs/s (4 KiB write + fdatasync in {})",
        report::number(fsync_rate),
        work.path().display()
    );

    let ctx = scenarios::Ctx {
        dir: work.path().to_path_buf(),
        options: options.clone(),
        fsync_rate,
    };
    let started = Instant::now();
    let mut sections = Vec::new();
    let mut failures = Vec::new();
    for name in SCENARIOS
        .iter()
        .filter(|s| options.scenarios.iter().any(|o| o == *s))
    {
        println!();
        let cpu_mbps =
            machine::cpu_speed(Duration::from_millis(if options.quick { 50 } else { 500 }));
        println!(
            "cpu: one core hashes {} MB/s (SHA-256)",
            report::number(cpu_mbps)
        );
        let begun = Instant::now();
        let section = scenarios::run(&ctx, name)
            .await
            .map(|s| report::Section { cpu_mbps, ..s });
        match &section {
            Ok(s) if s.skipped.is_some() => {}
            Ok(_) => println!("  ({name} took {:.0} s)", begun.elapsed().as_secs_f64()),
            Err(e) => {
                println!("  {name} FAILED: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
        if let Ok(s) = section {
            sections.push(s);
        }
    }
    println!(
        "\nall scenarios took {:.0} s",
        started.elapsed().as_secs_f64()
    );

    if options.write && !sections.is_empty() {
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let mut command = "cargo bench --bench smswire".to_string();
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        if !args.is_empty() {
            command.push_str(" -- ");
            command.push_str(&args.join(" "));
        }
        let path = root.join("BENCHMARKS.md");
        let run = report::Run {
            machine: &machine,
            fsync_rate,
            date: &date,
            command: &command,
            build: &build,
        };
        report::update_file(&path, &run, &sections)?;
        println!("results written to {}", path.display());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; ").into())
    }
}

/// Which source the binary was built from: the commit, and whether `src/` or Cargo.lock had
/// changes on top of it (the figures belong to that tree, not to the commit alone).
fn build_of(root: &std::path::Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            // Cargo.toml is left out: the bench's own section is in it.
            let dirty = git(&["status", "--porcelain", "--", "src", "Cargo.lock"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("commit {commit} + uncommitted changes")
            } else {
                format!("commit {commit}")
            }
        }
        None => "source not in git".into(),
    }
}
