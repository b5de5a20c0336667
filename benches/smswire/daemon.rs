//! The daemon under test: a generated TOML configuration, the real release binary started as
//! its own process, an account made over the admin socket, and what /proc says about the
//! process (RSS, CPU time).
//!
//! Every daemon gets its own directory (on the disk that holds `target/`, never tmpfs, so
//! that fsync costs what it costs in production) and its own free ports on 127.0.0.1.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::Res;

/// The binary cargo built for this bench (the release profile).
const BUILT: &str = env!("CARGO_BIN_EXE_smswire");

/// `--binary PATH`: another build of the daemon to start instead of [`BUILT`]. Two harness
/// processes started at once, each with its own binary, compare two builds under the same
/// host conditions (see BENCHMARKS.md); figures taken so are never written.
static BINARY: OnceLock<PathBuf> = OnceLock::new();

pub fn override_binary(path: PathBuf) {
    let _ = BINARY.set(path);
}

/// Whether `--binary` replaced the binary cargo built.
pub fn binary_given() -> bool {
    BINARY.get().is_some()
}

/// The daemon binary every scenario starts.
pub fn binary() -> &'static Path {
    BINARY.get().map_or(Path::new(BUILT), PathBuf::as_path)
}

/// Which provider the daemon uses.
#[derive(Debug, Clone)]
pub enum Provider {
    /// The built-in simulator with both delays at zero: submits and receipts flow as fast
    /// as the pipeline takes them.
    Simulator,
    /// An SMSC over SMPP on 127.0.0.1.
    Smpp { port: u16, window: usize },
}

/// `--commit-delay-us`: `[store] commit_delay_us` for every daemon of the run, to explore
/// (unset keeps the daemon's default, as the reference runs do).
static COMMIT_DELAY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

pub fn override_commit_delay(us: u64) {
    let _ = COMMIT_DELAY.set(us);
}

/// What a scenario changes from the defaults. Everything else is the daemon's default.
#[derive(Debug, Clone)]
pub struct Settings {
    pub provider: Provider,
    /// `[store] max_batch`; `None` keeps the default (group commit).
    pub max_batch: Option<usize>,
    pub billing: bool,
    /// `[webhooks] schedule`, as duration texts; empty keeps the default.
    pub schedule: Vec<String>,
    pub jitter: Option<f64>,
    pub concurrency: Option<usize>,
    pub per_webhook_concurrency: Option<usize>,
    /// `[webhooks] timeout` and `connect_timeout`.
    pub webhook_timeout: Option<String>,
    /// `[log] level`; benchmarks log only warnings so that logging is not what is measured.
    pub log_level: &'static str,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            provider: Provider::Simulator,
            max_batch: None,
            billing: true,
            schedule: Vec::new(),
            jitter: None,
            concurrency: None,
            per_webhook_concurrency: None,
            webhook_timeout: None,
            log_level: "warn",
        }
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the daemon binds it a moment later).
pub fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether this build of the daemon knows the `[metrics]` section (it may not exist yet);
/// asked once with `check-config`, since unknown keys make the daemon refuse its file.
fn metrics_supported(dir: &Path) -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let probe = dir.join("metrics-probe.toml");
        let text = "[metrics]\nenabled = true\nlisten = \"127.0.0.1:9\"\n";
        if std::fs::write(&probe, text).is_err() {
            return false;
        }
        let ok = Command::new(binary())
            .arg("check-config")
            .arg(&probe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let _ = std::fs::remove_file(&probe);
        ok
    })
}

/// A daemon's files and ports, kept across restarts; the directory is removed when this is
/// dropped (after the daemon, which scenarios declare later).
pub struct Instance {
    _tempdir: tempfile::TempDir,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub api: SocketAddr,
    /// The metrics listener, when this build has one.
    pub metrics: Option<SocketAddr>,
    pub socket: PathBuf,
    pub db: PathBuf,
}

impl Instance {
    /// Writes the configuration for `settings` in a new directory under `parent`.
    pub fn create(parent: &Path, name: &str, settings: &Settings) -> Res<Instance> {
        let tempdir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(parent)?;
        let dir = tempdir.path().to_path_buf();
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let metrics = metrics_supported(parent)
            .then(free_port)
            .transpose()?
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let instance = Instance {
            config_path: dir.join("smswire.toml"),
            socket: dir.join("admin.sock"),
            db: dir.join("smswire.redb"),
            _tempdir: tempdir,
            dir,
            api,
            metrics,
        };
        instance.write_config(settings)?;
        Ok(instance)
    }

    /// Rewrites the configuration (for a restart with other settings).
    pub fn write_config(&self, s: &Settings) -> Res<()> {
        let mut t = String::new();
        writeln!(t, "[api]\nlisten = \"{}\"\n", self.api)?;
        writeln!(t, "[store]\npath = \"{}\"", self.db.display())?;
        if let Some(n) = s.max_batch {
            writeln!(t, "max_batch = {n}")?;
        }
        if let Some(us) = COMMIT_DELAY.get() {
            writeln!(t, "commit_delay_us = {us}")?;
        }
        writeln!(t, "\n[admin]\nsocket = \"{}\"\n", self.socket.display())?;
        writeln!(t, "[log]\nlevel = \"{}\"\n", s.log_level)?;
        writeln!(t, "[billing]\nenabled = {}\n", s.billing)?;
        if let Some(addr) = self.metrics {
            writeln!(t, "[metrics]\nlisten = \"{addr}\"\n")?;
        }
        match &s.provider {
            Provider::Simulator => {
                writeln!(
                    t,
                    "[provider]\nkind = \"simulator\"\n\n[provider.simulator]\nsubmit_delay = \"0ms\"\nreceipt_delay = \"0ms\"\n"
                )?;
            }
            Provider::Smpp { port, window } => {
                writeln!(
                    t,
                    "[provider]\nkind = \"smpp\"\n\n[provider.smpp]\nhost = \"127.0.0.1\"\nport = {port}\n\
                     system_id = \"bench\"\npassword = \"bench\"\nwindow = {window}\n\
                     reconnect_min = \"100ms\"\nreconnect_max = \"200ms\"\n\
                     response_timeout = \"120s\"\n"
                )?;
            }
        }
        writeln!(t, "[webhooks]\nallowed_networks = [\"127.0.0.0/8\"]")?;
        if !s.schedule.is_empty() {
            let list: Vec<String> = s.schedule.iter().map(|d| format!("\"{d}\"")).collect();
            writeln!(t, "schedule = [{}]", list.join(", "))?;
        }
        if let Some(j) = s.jitter {
            writeln!(t, "jitter = {j:?}")?;
        }
        if let Some(n) = s.concurrency {
            writeln!(t, "concurrency = {n}")?;
        }
        if let Some(n) = s.per_webhook_concurrency {
            writeln!(t, "per_webhook_concurrency = {n}")?;
        }
        if let Some(d) = &s.webhook_timeout {
            writeln!(t, "timeout = \"{d}\"\nconnect_timeout = \"{d}\"")?;
        }
        std::fs::write(&self.config_path, t)?;
        Ok(())
    }

    /// Starts the daemon on this configuration and waits until `/readyz` answers 200.
    /// Returns the process and how long it took from spawn to ready.
    pub async fn start(&self) -> Res<(Daemon, Duration)> {
        self.start_until("/readyz").await
    }

    async fn start_until(&self, probe: &str) -> Res<(Daemon, Duration)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))?;
        let started = Instant::now();
        let child = Command::new(binary())
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            // RUST_LOG would override the configured log level.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut daemon = Daemon {
            child: Some(child),
            api: self.api,
            metrics: self.metrics,
            log: self.dir.join("daemon.log"),
        };
        let ready = daemon
            .wait_ready(probe, started, Duration::from_secs(120))
            .await?;
        Ok((daemon, ready))
    }
}

/// A running daemon; killed if dropped without [`Daemon::stop`].
pub struct Daemon {
    child: Option<Child>,
    pub api: SocketAddr,
    pub metrics: Option<SocketAddr>,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An account's API key.
#[derive(Debug, Clone)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

impl Key {
    /// The authentication headers of every `/v1` request.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("x-api-key-id", self.id.clone()),
            ("x-api-key-secret", self.secret.clone()),
            ("content-type", "application/json".into()),
        ]
    }
}

impl Daemon {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    async fn wait_ready(
        &mut self,
        probe: &str,
        started: Instant,
        limit: Duration,
    ) -> Res<Duration> {
        let url = format!("http://{}{probe}", self.api);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(format!(
                    "the daemon exited with {status} before it was ready; its log:\n{}",
                    self.log_tail()
                )
                .into());
            }
            if let Ok((200, _)) = http(Method::GET, &url, &[], Bytes::new()).await {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "the daemon was not ready after {limit:?}; its log:\n{}",
                    self.log_tail()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The last lines of the daemon's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Stops the daemon with SIGTERM and waits for it to exit (SIGKILL after `limit`).
    pub async fn stop(mut self, limit: Duration) -> Res<Duration> {
        let Some(mut child) = self.child.take() else {
            return Ok(Duration::ZERO);
        };
        let asked = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        loop {
            if child.try_wait()?.is_some() {
                return Ok(asked.elapsed());
            }
            if asked.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the daemon did not stop within {limit:?}; killed").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident memory, in bytes (VmRSS).
    pub fn rss_bytes(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS:") * 1024
    }

    /// CPU time used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.pid())
    }

    /// Creates an account with the CLI over the admin socket and returns its key.
    pub fn create_account(&self, socket: &Path) -> Res<Key> {
        let out = Command::new(binary())
            .args([
                "account",
                "create",
                "bench",
                "--balance",
                "1000000",
                "--socket",
            ])
            .arg(socket)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "account create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_string())
        };
        match (field("key_id"), field("secret")) {
            (Some(id), Some(secret)) => Ok(Key { id, secret }),
            _ => Err(format!("no key_id/secret in the output of account create:\n{text}").into()),
        }
    }

    /// Registers a webhook for `sms.status` at `url`; returns its id.
    pub async fn create_webhook(&self, key: &Key, url: &str) -> Res<String> {
        let body = serde_json::json!({ "url": url, "events": ["sms.status"] }).to_string();
        let (status, answer) = self
            .api_call(key, Method::POST, "/v1/webhooks", body)
            .await?;
        if status != 201 {
            return Err(format!(
                "POST /v1/webhooks answered {status}: {}",
                String::from_utf8_lossy(&answer)
            )
            .into());
        }
        let value: serde_json::Value = serde_json::from_slice(&answer)?;
        value["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "no id in the webhook answer".into())
    }

    /// One API request with the account's key.
    pub async fn api_call(
        &self,
        key: &Key,
        method: Method,
        path: &str,
        body: String,
    ) -> Res<(u16, Bytes)> {
        let url = format!("http://{}{path}", self.api);
        http(method, &url, &key.headers(), Bytes::from(body)).await
    }

    /// A gauge or counter from `/metrics` (summed over its label sets), when this build
    /// serves metrics and has it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let addr = self.metrics?;
        let (status, text) = http(
            Method::GET,
            &format!("http://{addr}/metrics"),
            &[],
            Bytes::new(),
        )
        .await
        .ok()?;
        if status != 200 {
            return None;
        }
        let text = String::from_utf8_lossy(&text);
        let mut found = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let base = series.split('{').next().unwrap_or(series);
            if base == name || base == format!("{name}_total") {
                *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
            }
        }
        found
    }
}

/// One HTTP request with a fresh connection: for setup and probes, not for load.
pub async fn http(
    method: Method,
    url: &str,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Res<(u16, Bytes)> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    let client = CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http());
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request.body(Full::new(body))?;
    let response = tokio::time::timeout(Duration::from_secs(60), client.request(request))
        .await
        .map_err(|_| format!("{url}: no answer in 60 s"))??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may contain spaces: count fields after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of the man page, utime 14 and stime 15.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = ticks(11) + ticks(12);
    Duration::from_secs_f64(total as f64 / clock_ticks() as f64)
}

/// Clock ticks per second of /proc times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// The CPU time of this process (the harness: load generator, receiver), for comparison.
pub fn own_cpu_time() -> Duration {
    cpu_time(std::process::id())
}
