//! What machine the figures come from: cores, memory, kernel, CPU model, the file system of
//! the benchmark directory, and the disk's raw fsync rate measured here, next to the redb
//! files, so that group commit can be judged against what the disk can do on its own.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Res;

/// The machine, as printed in BENCHMARKS.md.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub cpu: String,
    /// The file system type under the benchmark directory (`ext4`, `xfs`, ...).
    pub filesystem: String,
}

impl Machine {
    /// Reads what /proc says about this machine.
    pub fn detect(dir: &Path) -> Machine {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(
                || "unknown".into(),
                |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
            );
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, v)| v.trim().to_string());
        Machine {
            cores,
            memory,
            kernel,
            cpu,
            filesystem: filesystem_of(dir),
        }
    }

    /// One line for the console.
    pub fn summary(&self) -> String {
        format!(
            "{} cores, {} RAM, Linux {}, {}, benchmark files on {}",
            self.cores, self.memory, self.kernel, self.cpu, self.filesystem
        )
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The type of the file system that holds `dir`: the mount whose point is the longest
/// prefix of its canonical path, from /proc/self/mountinfo.
pub fn filesystem_of(dir: &Path) -> String {
    let Ok(dir) = dir.canonicalize() else {
        return "unknown".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in read("/proc/self/mountinfo").lines() {
        // Fields: id parent major:minor root mount-point options ... - fstype source opts
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let Some(fstype) = fields.get(dash + 1) else {
            continue;
        };
        if dir.starts_with(point) && best.as_ref().is_none_or(|(len, _)| point.len() >= *len) {
            best = Some((point.len(), (*fstype).to_string()));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, t)| t)
}

/// The disk's raw rate of small durable writes: 4 KiB written then `fdatasync`, in a loop,
/// on a file in `dir`, for about `length`. Returns fsyncs per second.
pub fn fsync_rate(dir: &Path, length: Duration) -> Res<f64> {
    let path = dir.join("fsync-probe.bin");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    let block = [0x5au8; 4096];
    // Allocate the block once first so the loop measures overwrite-and-sync, as a database
    // page rewrite is, not file growth.
    file.write_all(&block)?;
    file.sync_all()?;
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < length {
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&block)?;
        file.sync_data()?;
        count += 1;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}

/// How fast one core is right now: SHA-256 throughput in MB/s over `length`.
///
/// Every scenario's section records this beside its figures. The host is a shared virtual
/// machine whose speed drifts (the same build has measured 20 to 50 % apart an hour later);
/// a lower figure here means a slower CPU, but the drift seen so far left it unchanged, so
/// an unchanged figure does not prove two runs comparable.
pub fn cpu_speed(length: Duration) -> f64 {
    use sha2::{Digest, Sha256};
    let block = vec![0xa5u8; 64 * 1024];
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut hasher = Sha256::new();
    while started.elapsed() < length {
        for _ in 0..16 {
            hasher.update(&block);
        }
        bytes += 16 * block.len() as u64;
    }
    std::hint::black_box(hasher.finalize());
    bytes as f64 / 1e6 / started.elapsed().as_secs_f64()
}
