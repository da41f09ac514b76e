//! The binaries as a user meets them: `--help` texts and defaults, and logs written to a
//! pipe (the harness reads stderr through one, with `NO_COLOR` unset).

use std::process::Command;

use crate::harness;

/// Any ANSI escape sequence (colour codes start with ESC).
const ESC: char = '\u{1b}';

#[test]
fn logs_into_a_pipe_are_plain_text_and_name_the_database() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    let line = ex.proc.wait_logged("database opened")?;
    let db = std::fs::canonicalize(dir.path().join("exchange").join("exchange.sqlite"))?;
    anyhow::ensure!(line.contains(&db.display().to_string()), "no database path in {line:?}");
    let host = harness::host("host", &dir.path().join("host"), &ex.url, &[])?;
    for (name, log) in [("exchange", ex.proc.tail()), ("host", host.proc.tail())] {
        anyhow::ensure!(!log.contains(ESC), "{name} logs colour codes into a pipe:\n{log}");
        anyhow::ensure!(log.contains(" INFO "), "{name} logged nothing at info:\n{log}");
    }
    Ok(())
}

/// `cmd --help` of a binary, as text.
fn help(exe: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(exe).args(args).arg("--help").env_remove("NO_COLOR").output()?;
    anyhow::ensure!(out.status.success(), "{} {args:?} --help failed", exe.display());
    Ok(String::from_utf8(out.stdout)?)
}

/// The help text of one flag: from its line to the next flag's.
fn flag_help<'a>(help: &'a str, flag: &str) -> &'a str {
    let Some(start) = help.find(&format!("{flag} ")) else { return "" };
    let rest = &help[start..];
    let end = rest[flag.len()..].find("\n  -").map_or(rest.len(), |i| i + flag.len());
    &rest[..end]
}

#[test]
fn help_shows_the_defaults() -> anyhow::Result<()> {
    let (exchange, host) = harness::binaries();
    let h = help(exchange, &[])?;
    let data_dir = flag_help(&h, "--data-dir");
    anyhow::ensure!(
        data_dir.contains("[default: ") && data_dir.contains(".bitwrk-exchange"),
        "bitwrk-exchange --data-dir shows no default:\n{h}"
    );
    for sub in ["buy", "publish"] {
        let h = help(host, &[sub])?;
        anyhow::ensure!(
            flag_help(&h, "--exchange").contains("[default: http://127.0.0.1:8080]"),
            "bitwrk-host {sub} --exchange has not the default of the others:\n{h}"
        );
    }
    Ok(())
}

/// `article run DIR` finds the module `cargo build-articles` built even when
/// `CARGO_TARGET_DIR` now names another (empty) target dir, or cargo cannot be run, and
/// from outside the checkout.
#[test]
fn article_run_finds_the_module_whatever_cargo_target_dir_says() -> anyhow::Result<()> {
    let (_, host) = harness::binaries();
    let dir = tempfile::tempdir()?;
    let article = bitwrk_host::local_articles::workspace_root().join("articles/wordcount");
    let text = dir.path().join("book.txt");
    std::fs::write(&text, "to be or not to be")?;
    let elsewhere = dir.path().join("elsewhere");
    let no_cargo = dir.path().join("no-cargo");
    for (case, var, value) in
        [("another target dir", "CARGO_TARGET_DIR", &elsewhere), ("no cargo", "CARGO", &no_cargo)]
    {
        let out_dir = dir.path().join(format!("out-{var}"));
        let out = Command::new(host)
            .current_dir(dir.path())
            .env_remove("CARGO_TARGET_DIR")
            .env(var, value)
            .arg("--data-dir")
            .arg(dir.path().join("host"))
            .args(["article", "run"])
            .arg(&article)
            .arg("-i")
            .arg(format!("text=@{}", text.display()))
            .arg("-o")
            .arg(&out_dir)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "article run with {case} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counts: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out_dir.join("counts"))?)?;
        anyhow::ensure!(counts["total_words"] == 6, "{case}: wrong counts: {counts}");
    }
    Ok(())
}

/// `--ext-addr 0.0.0.0` is refused at once, saying what to give instead.
#[test]
fn ext_addr_unspecified_is_refused_with_advice() -> anyhow::Result<()> {
    let (_, host) = harness::binaries();
    let dir = tempfile::tempdir()?;
    let out = Command::new(host)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", "--int-port", "0", "--ext-port", "0", "--ext-addr", "0.0.0.0"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(!out.status.success(), "0.0.0.0 was accepted:\n{err}");
    anyhow::ensure!(
        err.contains("host name") && err.contains("--ext-bind 0.0.0.0"),
        "no advice in:\n{err}"
    );
    Ok(())
}

/// A seller bound to loopback and advertised by host name sells: the buyer reaches it
/// through the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_advertised_by_host_name_sells() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    harness::publish(&ex.url, &["wordcount"]).await?;
    let flags = [
        "--ext-port",
        "0",
        "--ext-bind",
        "127.0.0.1",
        "--ext-addr",
        "localhost",
        "--mandate",
        "sell:*:0",
        "--sell",
        "wordcount:100",
    ];
    let seller = harness::host("seller", &dir.path().join("seller"), &ex.url, &flags)?;
    let log = seller.proc.tail();
    anyhow::ensure!(log.contains("worker=http://localhost:"), "not advertised by name:\n{log}");
    let buyer = harness::buyer(&dir.path().join("buyer"), &ex.url, 1000)?;
    let got =
        harness::buy(&buyer.int_url, "wordcount", vec![("text", b"a b a".to_vec())], None).await?;
    anyhow::ensure!(
        got.status == 303,
        "buy answered {}: {}\n{}",
        got.status,
        String::from_utf8_lossy(&got.body),
        seller.proc.tail()
    );
    let counts: serde_json::Value = serde_json::from_slice(&got.body)?;
    anyhow::ensure!(counts["total_words"] == 3, "wrong counts: {counts}");
    Ok(())
}
