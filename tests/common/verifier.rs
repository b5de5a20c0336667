//! The official Standard Webhooks verifier (the `standardwebhooks` Python package), installed
//! on first use with pip into `target/standardwebhooks/` from `tests/verifier/requirements.txt`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::receiver::Recorded;

static INSTALL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The folder holding the installed package; installs it when missing. Panics with what
/// to do when pip cannot install it: a verifier that cannot run must not pass silently.
pub fn install() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let target = root().join("target/standardwebhooks");
    if target.join("standardwebhooks").exists() {
        return target;
    }

    // Install next to the final folder and rename, so a concurrent run never sees half.
    let partial = root().join(format!(
        "target/standardwebhooks.partial.{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&partial);
    let requirements = root().join("tests/verifier/requirements.txt");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&partial)
        .arg("-r")
        .arg(&requirements)
        .output();
    let ok = matches!(&out, Ok(o) if o.status.success());
    assert!(
        ok,
        "cannot install the Standard Webhooks verifier with pip (python3 -m pip install --target \
         {} -r {}): {}",
        partial.display(),
        requirements.display(),
        match &out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        }
    );
    if std::fs::rename(&partial, &target).is_err() {
        // Another run won the race; its copy is as good.
        let _ = std::fs::remove_dir_all(&partial);
    }
    target
}

/// Runs the official library over `calls`; returns the webhook ids it accepted, or panics
/// with its verdict when it refuses one.
pub fn verify(secret: &str, calls: &[Recorded], work: &Path) -> Vec<String> {
    check(secret, calls, work).unwrap_or_else(|verdict| panic!("{verdict}"))
}

/// Like [`verify`], but a refusal is returned as the library's verdict.
pub fn check(secret: &str, calls: &[Recorded], work: &Path) -> Result<Vec<String>, String> {
    let lib = install();
    let input = serde_json::json!({
        "secret": secret,
        "calls": calls.iter().map(|c| serde_json::json!({
            "headers": c.headers,
            "body_hex": c.body.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        })).collect::<Vec<_>>(),
    });
    let file = work.join("calls.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let out = Command::new("python3")
        .arg(root().join("tests/verifier/verify.py"))
        .arg(&file)
        .env("PYTHONPATH", &lib)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "standardwebhooks refused a signature: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("ok ").map(str::to_string))
        .collect())
}
