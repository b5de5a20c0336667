//! The local SMSC (`tests/smsc/smsc.js`, on the npm package `smpp`), the node client that
//! measures its own ceiling (`benches/smsc-client.js`), and Kannel (Debian's `kannel`:
//! bearerbox + smsbox) configured against that SMSC.
//!
//! The npm package is installed the way the integration tests do it: `npm ci` from the
//! committed lockfile into `target/smsc/`, once.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hyper::Method;
use hyper::body::Bytes;

use crate::Res;
use crate::daemon::{free_port, http};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `node_modules` folder holding `smpp`; runs `npm ci` into `target/smsc` when missing.
pub fn install() -> Res<PathBuf> {
    let target = root().join("target/smsc");
    let modules = target.join("node_modules");
    if modules.join("smpp").exists() {
        return Ok(modules);
    }
    // Install beside, then rename, so an interrupted install never looks complete.
    let partial = root().join(format!("target/smsc.partial.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(root().join("tests/smsc").join(f), partial.join(f))?;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&partial)
        .output()
        .map_err(|e| format!("cannot run npm (is node installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "npm ci for the SMSC failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let _ = std::fs::remove_dir_all(&target);
    if std::fs::rename(&partial, &target).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    Ok(modules)
}

/// A running `smsc.js`; killed when dropped.
pub struct Smsc {
    pub port: u16,
    child: Child,
    stdin: ChildStdin,
    /// The `result` lines of commands, from the stdout reader thread.
    results: mpsc::Receiver<String>,
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smsc {
    /// Starts the SMSC with `args` on a free port and waits until it listens.
    pub fn start(args: &[&str]) -> Res<Smsc> {
        let modules = install()?;
        let mut child = Command::new("node")
            .arg(root().join("tests/smsc/smsc.js"))
            .args(["--system-id", "bench", "--password", "bench"])
            .args(args)
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start node: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, results) = mpsc::channel();
        // The SMSC prints a JSON line for every PDU: read them all (so it never blocks on a
        // full pipe) but keep only `listening` and command results, found by prefix, to
        // spend as little CPU as possible on them.
        std::thread::spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 20, stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if (line.starts_with("{\"event\":\"result\"")
                    || line.starts_with("{\"event\":\"listening\""))
                    && tx.send(line.clone()).is_err()
                {
                    return;
                }
            }
        });
        let mut smsc = Smsc {
            port: 0,
            child,
            stdin,
            results,
        };
        let line = smsc
            .results
            .recv_timeout(Duration::from_secs(20))
            .map_err(|_| "the SMSC did not report listening in 20 s")?;
        let value: serde_json::Value = serde_json::from_str(&line)?;
        smsc.port = value["port"].as_u64().ok_or("no port in listening")? as u16;
        Ok(smsc)
    }

    /// Sends one command line and returns its result line.
    fn command(&mut self, command: &str) -> Res<serde_json::Value> {
        self.stdin.write_all(command.as_bytes())?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        let line = self
            .results
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| format!("no answer from the SMSC to {command} in 10 s"))?;
        Ok(serde_json::from_str(&line)?)
    }

    /// The SMSC's counters (`{"cmd":"stats"}`).
    pub fn stats(&mut self) -> Res<serde_json::Value> {
        self.command(r#"{"cmd":"stats"}"#)
    }

    /// Holds back (or releases) submit responses: with `on`, the client's window fills and
    /// everything else waits where it would wait for a slow SMSC.
    pub fn hold(&mut self, on: bool) -> Res<()> {
        self.command(&format!(r#"{{"cmd":"hold","on":{on}}}"#))?;
        Ok(())
    }

    /// Submits answered so far.
    pub fn submits(&mut self) -> Res<u64> {
        Ok(self.stats()?["submits"].as_u64().unwrap_or(0))
    }
}

/// Runs `benches/smsc-client.js` against the SMSC on `port` with `window`, for `seconds`;
/// returns submits per second.
pub fn client_ceiling(port: u16, window: usize, seconds: f64) -> Res<f64> {
    let modules = install()?;
    let out = Command::new("node")
        .arg(root().join("benches/smsc-client.js"))
        .args(["--port", &port.to_string()])
        .args(["--window", &window.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--warmup", "0.5"])
        .env("NODE_PATH", &modules)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "smsc-client.js failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    value["rate"]
        .as_f64()
        .ok_or_else(|| "no rate in smsc-client.js output".into())
}

/// Where the Kannel binaries are, installing Debian's package when they are missing and
/// `install` allows it (root, apt-get). `Err` says why Kannel cannot be had.
pub fn kannel_binaries(install: bool) -> Result<(PathBuf, PathBuf), String> {
    let find = || {
        let b = PathBuf::from("/usr/sbin/bearerbox");
        let s = PathBuf::from("/usr/sbin/smsbox");
        (b.exists() && s.exists()).then_some((b, s))
    };
    if let Some(found) = find() {
        return Ok(found);
    }
    if !install {
        return Err(
            "Kannel is not installed (/usr/sbin/bearerbox missing) and this run does not \
                    install packages (--quick)"
                .into(),
        );
    }
    println!("  installing Debian's kannel package (apt-get install -y kannel)...");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let mut out = apt(&["install", "-y", "kannel"]);
    if !matches!(&out, Ok(o) if o.status.success()) {
        // A fresh machine may have no package lists yet.
        let _ = apt(&["update"]);
        out = apt(&["install", "-y", "kannel"]);
    }
    match out {
        Ok(o) if o.status.success() => find()
            .ok_or_else(|| "apt-get installed kannel but /usr/sbin/bearerbox is missing".into()),
        Ok(o) => Err(format!(
            "apt-get install -y kannel failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run apt-get: {e}")),
    }
}

/// A running Kannel (bearerbox + smsbox); both killed when dropped.
pub struct Kannel {
    pub sendsms_port: u16,
    admin_port: u16,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Kannel {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Kannel {
    /// Writes a configuration in `dir` for an SMPP link to `smsc_port` with `window`
    /// submits outstanding, starts bearerbox and smsbox quietly, and waits until the link is
    /// online and sendsms answers.
    pub async fn start(
        binaries: &(PathBuf, PathBuf),
        dir: &Path,
        smsc_port: u16,
        window: usize,
    ) -> Res<Kannel> {
        let (admin, boxes, sendsms) = (free_port()?, free_port()?, free_port()?);
        let d = dir.display();
        // log-level 4 (panic only) in the files and -v 4 on the console: at debug level,
        // Kannel's logging dominates its CPU use.
        let config = format!(
            "group = core\n\
             admin-port = {admin}\n\
             admin-password = bench\n\
             status-password = bench\n\
             admin-allow-ip = \"127.0.0.1\"\n\
             smsbox-port = {boxes}\n\
             box-allow-ip = \"127.0.0.1\"\n\
             dlr-storage = internal\n\
             log-file = \"{d}/bearerbox.log\"\n\
             log-level = 4\n\
             \n\
             group = smsc\n\
             smsc = smpp\n\
             smsc-id = local\n\
             host = 127.0.0.1\n\
             port = {smsc_port}\n\
             transceiver-mode = true\n\
             smsc-username = bench\n\
             smsc-password = bench\n\
             system-type = \"\"\n\
             max-pending-submits = {window}\n\
             msg-id-type = 0x00\n\
             log-level = 4\n\
             \n\
             group = smsbox\n\
             bearerbox-host = 127.0.0.1\n\
             bearerbox-port = {boxes}\n\
             sendsms-port = {sendsms}\n\
             log-file = \"{d}/smsbox.log\"\n\
             log-level = 4\n\
             \n\
             group = sendsms-user\n\
             username = bench\n\
             password = bench\n\
             max-messages = 10\n\
             \n\
             group = sms-service\n\
             keyword = default\n\
             text = \"no service\"\n"
        );
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("kannel.conf");
        std::fs::write(&conf, config)?;
        let spawn = |binary: &Path, name: &str| -> Res<Child> {
            let log = std::fs::File::create(dir.join(format!("{name}.out")))?;
            Ok(Command::new(binary)
                .args(["-v", "4"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start {name}: {e}"))?)
        };
        let mut kannel = Kannel {
            sendsms_port: sendsms,
            admin_port: admin,
            children: vec![spawn(&binaries.0, "bearerbox")?],
            dir: dir.to_path_buf(),
        };
        // smsbox connects to bearerbox's box port, so bearerbox goes first.
        let status = format!("http://127.0.0.1:{admin}/status.txt?password=bench");
        kannel
            .wait(Duration::from_secs(30), || async {
                matches!(http(Method::GET, &status, &[], Bytes::new()).await,
                    Ok((200, body)) if String::from_utf8_lossy(&body).contains("online"))
            })
            .await
            .map_err(|e| format!("bearerbox's SMPP link did not come online: {e}"))?;
        kannel.children.push(spawn(&binaries.1, "smsbox")?);
        let probe = format!("http://127.0.0.1:{sendsms}/cgi-bin/sendsms");
        kannel
            .wait(Duration::from_secs(30), || async {
                // Without credentials sendsms answers 403: enough to know it listens.
                http(Method::GET, &probe, &[], Bytes::new()).await.is_ok()
            })
            .await
            .map_err(|e| format!("smsbox did not answer: {e}"))?;
        Ok(kannel)
    }

    /// bearerbox's own counters (the SMS and DLR lines of its status page), for the
    /// console: where messages wait when Kannel is slow.
    pub async fn status(&self) -> String {
        let url = format!(
            "http://127.0.0.1:{}/status.txt?password=bench",
            self.admin_port
        );
        match http(Method::GET, &url, &[], Bytes::new()).await {
            Ok((200, body)) => String::from_utf8_lossy(&body)
                .lines()
                .filter(|l| l.starts_with("SMS:") || l.starts_with("DLR:"))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("; "),
            Ok((code, _)) => format!("status page answered {code}"),
            Err(e) => format!("no status: {e}"),
        }
    }

    async fn wait<F, Fut>(&mut self, limit: Duration, mut ready: F) -> Res<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            for child in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    return Err(format!(
                        "a Kannel process exited with {status}; see {}",
                        self.dir.display()
                    )
                    .into());
                }
            }
            if ready().await {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(format!("not ready in {limit:?}; see {}", self.dir.display()).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
