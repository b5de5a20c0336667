//! The shipped `config/smswire.toml` documents the defaults: parsing it gives exactly the
//! configuration of a daemon started with no file.

use smswire::Config;

/// The example file and the built-in defaults agree key for key.
#[test]
fn shipped_file_equals_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/smswire.toml");
    let file = Config::load(&path).expect("the shipped file is valid");
    assert_eq!(file.to_toml(), Config::default().to_toml());
}

/// Runs `smswire check-config FILE`.
fn check_config(file: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_smswire"))
        .arg("check-config")
        .arg(file)
        .output()
        .expect("runs")
}

/// A wrong file is refused with an error naming the bad key.
#[test]
fn check_config_names_the_bad_key() {
    let dir = std::env::temp_dir().join(format!("smswire-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[billing]\nenabeld = false\n").expect("write");
    let out = check_config(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("enabeld"), "{err}");

    let good = dir.join("good.toml");
    std::fs::write(&good, "[api]\nlisten = \"0.0.0.0:9000\"\n").expect("write");
    let out = check_config(&good);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"0.0.0.0:9000\""), "{text}");
    assert!(text.contains("max_parts = 10"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
