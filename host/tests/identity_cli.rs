//! `bitwrk-host identity …` as a user runs it: the real binary, a real data dir, and a
//! signature checked by libsecp256k1 (scripts/btc_verify.py) as an independent verifier.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

const KNOWN_WIF: &str = "Kwr371tjA9u2rFSMZjTNun2PXXP3WPZu2afRHTcta6KxEUdm1vEw";
const KNOWN_ADDRESS: &str = "1NoJrossxPBKfCHuJXT4HadJrXRE9Fxiqs";

fn host(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitwrk-host"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("BITWRK_DATA_DIR")
        .output()
        .expect("bitwrk-host runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn show_creates_key_with_private_modes_and_is_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = host(&dir, &["identity", "show"]);
    assert!(first.status.success(), "{first:?}");
    let addr = stdout(&first);
    assert!(addr.starts_with('1') && addr.len() >= 26, "{addr}");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let key = dir.join("privatekey.wif");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(stdout(&host(&dir, &["identity", "show"])), addr, "same key on second start");
}

#[test]
fn known_wif_gives_its_address() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("privatekey.wif"), format!("{KNOWN_WIF}\n")).unwrap();
    let o = host(tmp.path(), &["identity", "show"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), KNOWN_ADDRESS);
}

#[test]
fn invalid_key_file_is_an_error_and_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("privatekey.wif");
    for bad in ["not a key\n", "5HxWvvfubhXpYYpS3tJkw6fq9jE9j18THftkZjHHfmFiWtmAbrj\n", ""] {
        std::fs::write(&key, bad).unwrap();
        let o = host(tmp.path(), &["identity", "show"]);
        assert!(!o.status.success(), "{bad:?} accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("privatekey.wif"), "error names the file: {err}");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), bad, "key file untouched");
    }
}

#[test]
fn sign_then_verify_and_tamper() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("privatekey.wif"), KNOWN_WIF).unwrap();
    let msg = "bitwrk says hello ✓";
    let sig = stdout(&host(tmp.path(), &["identity", "sign", msg]));
    assert_eq!(sig.len(), 88, "{sig}");
    let ok = host(tmp.path(), &["identity", "verify", KNOWN_ADDRESS, &sig, msg]);
    assert!(ok.status.success());
    assert_eq!(stdout(&ok), "valid");
    let bad = host(tmp.path(), &["identity", "verify", KNOWN_ADDRESS, &sig, "bitwrk says hello"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).starts_with("invalid"), "says why: {}", stdout(&bad));
    let garbage = host(tmp.path(), &["identity", "verify", KNOWN_ADDRESS, "AAAA", msg]);
    assert_eq!(garbage.status.code(), Some(1));
}

/// Bitcoin Core's libsecp256k1 (python `coincurve`) must accept our signatures and derive
/// the same address from our WIF, i.e. `importprivkey` + `verifymessage` would agree.
#[test]
fn independent_implementation_agrees() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/btc_verify.py");
    let probe = Command::new("python3").args(["-c", "import coincurve"]).output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with coincurve is required under CI (pip install coincurve)"
        );
        eprintln!("skipping: python3 -m pip install coincurve to run this check");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let addr = stdout(&host(tmp.path(), &["identity", "show"]));
    let wif = std::fs::read_to_string(tmp.path().join("privatekey.wif")).unwrap();
    let o = Command::new("python3").args([script, "--wif-address", wif.trim()]).output().unwrap();
    assert_eq!(stdout(&o), addr, "libsecp256k1 derives the same address from the WIF");
    for msg in ["", "short", &"long message ".repeat(40)] {
        let sig = stdout(&host(tmp.path(), &["identity", "sign", msg]));
        let v = Command::new("python3").args([script, &addr, &sig, msg]).output().unwrap();
        assert_eq!(stdout(&v), "valid", "{msg:?}: {v:?}");
    }
}
