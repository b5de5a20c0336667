//! A real SMSC for the SMPP tests: `tests/smsc/smsc.js`, a server built on the `smpp`
//! package from the npm registry (not written by us), installed on first use with `npm ci`
//! from the committed lockfile into `target/smsc/`. It reports every PDU as a JSON line on
//! stdout and takes commands on stdin (see `tests/smsc/README.md`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

static INSTALL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `node_modules` folder holding `smpp`; runs `npm ci` when it is missing. Panics with
/// npm's message when it cannot be had: an SMSC that cannot run must not pass silently.
fn install() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let target = root().join("target/smsc");
    let modules = target.join("node_modules");
    if modules.join("smpp").exists() {
        return modules;
    }

    let partial = root().join(format!("target/smsc.partial.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).unwrap();
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(root().join("tests/smsc").join(f), partial.join(f)).unwrap();
    }
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&partial)
        .output();
    let ok = matches!(&out, Ok(o) if o.status.success());
    assert!(
        ok,
        "cannot install the test SMSC's npm package (npm ci in {}): {}",
        partial.display(),
        match &out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => format!("{e} (is node/npm installed?)"),
        }
    );
    let _ = std::fs::remove_dir_all(&target);
    if std::fs::rename(&partial, &target).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    modules
}

/// A running SMSC.
pub struct Smsc {
    pub port: u16,
    child: Child,
    stdin: ChildStdin,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Smsc {
    /// Starts `smsc.js` with `args` and waits until it listens.
    pub async fn start(args: &[&str]) -> Smsc {
        let modules = install();
        let mut child = Command::new("node")
            .arg(root().join("tests/smsc/smsc.js"))
            .args(args)
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let mut smsc = Smsc {
            port: 0,
            child,
            stdin,
            events,
        };
        let listening = smsc
            .wait(|e| e["event"] == "listening", Duration::from_secs(20))
            .await;
        smsc.port = listening["port"].as_u64().unwrap() as u16;
        smsc
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// The events named `name`.
    pub fn named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Waits for an event matching `matches`, or panics after `within`.
    pub async fn wait(&self, matches: impl Fn(&Value) -> bool, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| matches(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "SMSC event not seen in {within:?}; events: {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until at least `n` events named `name` arrived.
    pub async fn wait_count(&self, name: &str, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let found = self.named(name);
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} {name} events in {within:?}",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends a command and returns its result event.
    pub async fn command(&mut self, cmd: Value) -> Value {
        let before = self.named("result").len();
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let name = cmd["cmd"].clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let results = self.named("result");
            if let Some(r) = results.iter().skip(before).find(|r| r["cmd"] == name) {
                return r.clone();
            }
            assert!(Instant::now() < deadline, "no result for {cmd}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the SMSC.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
