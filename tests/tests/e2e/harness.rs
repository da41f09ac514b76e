//! Real processes on loopback: the `bitwrk-exchange` and `bitwrk-host` binaries, started
//! on port 0, their addresses read from their ready lines, their logs captured so a
//! test can wait for an event (a log line) instead of sleeping.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_protocol::PrivateKey;

/// How long a test waits for a process to come up or a log line to appear.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(120);

/// `target/<profile>`, where cargo put this test binary's siblings.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/e2e-…").to_path_buf()
}

/// Build the two binaries and the wasm articles once per test run (a no-op when fresh).
pub fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let root = bitwrk_host::local_articles::workspace_root();
        let release = profile_dir().ends_with("release");
        let mut build = Command::new(&cargo);
        build.current_dir(&root).args([
            "build",
            "-p",
            "bitwrk-host",
            "-p",
            "bitwrk-exchange",
            "--bins",
        ]);
        if release {
            build.arg("--release");
        }
        let st = build.status().expect("running cargo build");
        assert!(st.success(), "cargo build of bitwrk-host and bitwrk-exchange failed");
        let st = Command::new(&cargo)
            .current_dir(&root)
            .arg("build-articles")
            .status()
            .expect("running cargo build-articles");
        assert!(st.success(), "cargo build-articles failed");
        let dir = profile_dir();
        (dir.join("bitwrk-exchange"), dir.join("bitwrk-host"))
    })
}

/// A child process whose stdout and stderr lines are collected.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    /// Every line so far (for failure messages).
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<Proc> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        // No NO_COLOR: the binaries themselves must log plain text into a pipe.
        cmd.env("RUST_LOG", "info,bitwrk_host=debug").env_remove("NO_COLOR");
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let (tx, rx) = channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        for stream in [Box::new(out) as Box<dyn std::io::Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            let log = log.clone();
            let name = name.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("E2E_VERBOSE").is_some() {
                        eprintln!("[{name}] {line}");
                    }
                    log.lock().expect("log lock").push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Proc { name: name.to_string(), child, lines: rx, log })
    }

    /// Wait for the next line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str) -> anyhow::Result<String> {
        let end = Instant::now() + EVENT_TIMEOUT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Ok(l),
                Ok(_) => {}
                Err(_) => bail!(
                    "{}: no line with {needle:?} within {EVENT_TIMEOUT:?}; log:\n{}",
                    self.name,
                    self.tail()
                ),
            }
        }
    }

    /// A line containing `needle` printed at any time so far (also before an earlier
    /// `wait_line` consumed it, e.g. a line printed before the ready line), or else the
    /// next one.
    pub fn wait_logged(&self, needle: &str) -> anyhow::Result<String> {
        let seen = self.log.lock().expect("log lock").iter().find(|l| l.contains(needle)).cloned();
        match seen {
            Some(l) => Ok(l),
            None => self.wait_line(needle),
        }
    }

    pub fn tail(&self) -> String {
        let log = self.log.lock().expect("log lock");
        log.iter().rev().take(40).rev().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGKILL: the process dies at once, mid-whatever.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running exchange.
pub struct Exchange {
    /// Held so the process lives as long as this handle (dropping it kills the exchange).
    #[allow(dead_code)]
    pub proc: Proc,
    pub url: String,
}

/// Start `bitwrk-exchange` on 127.0.0.1:0 with extra flags (e.g. short deadlines).
/// Every party of a test is on 127.0.0.1, so the per-IP limits are off: the request
/// rate and the funding quota for fresh accounts (exchange/tests/api.rs tests those).
pub fn exchange(dir: &Path, flags: &[&str]) -> anyhow::Result<Exchange> {
    let (exe, _) = binaries();
    let mut cmd = Command::new(exe);
    cmd.arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--rate-limit-per-s", "0"])
        .args(["--funded-accounts-per-ip-per-hour", "0"])
        .args(flags);
    let proc = Proc::spawn("exchange", cmd)?;
    let line = proc.wait_line("listening on ")?;
    let url = line.rsplit(' ').next().context("listening line")?.to_string();
    Ok(Exchange { proc, url })
}

/// A running host.
pub struct Host {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT` of the buying proxy.
    pub int_url: String,
    pub address: String,
}

/// Start `bitwrk-host run` against `exchange` with extra flags. Every seller of a test is
/// on 127.0.0.1, so the host buys with `--lan-market` (a default host refuses loopback
/// workers: [`host_public`]).
pub fn host(name: &str, dir: &Path, exchange: &str, flags: &[&str]) -> anyhow::Result<Host> {
    let mut flags = flags.to_vec();
    flags.push("--lan-market");
    host_public(name, dir, exchange, &flags)
}

/// [`host`] without `--lan-market`: a host as on a public market, which connects to no
/// seller on a loopback, private or link-local address.
pub fn host_public(name: &str, dir: &Path, exchange: &str, flags: &[&str]) -> anyhow::Result<Host> {
    let mut args: Vec<String> = vec!["--data-dir".into(), dir.display().to_string()];
    args.extend(["run", "--exchange", exchange, "--int-port", "0"].map(String::from));
    args.extend(flags.iter().map(|f| f.to_string()));
    host_with_args(name, &args)
}

/// Start `bitwrk-host` with exactly these arguments (a `run` command line, e.g. one taken
/// from the README) and wait for its ready line.
pub fn host_with_args(name: &str, args: &[String]) -> anyhow::Result<Host> {
    let (_, exe) = binaries();
    let mut cmd = Command::new(exe);
    cmd.args(args);
    let proc = Proc::spawn(name, cmd)?;
    let line = proc.wait_line("bitwrk-host ready ")?;
    let field = |k: &str| {
        line.split(' ')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
            .context("ready line field")
    };
    Ok(Host { int_url: format!("http://{}", field("int")?), address: field("address")?, proc })
}

/// Publish the example articles with a throwaway key; returns the client.
pub async fn publish(url: &str, names: &[&str]) -> anyhow::Result<ExchangeClient> {
    let client = ExchangeClient::connect(url).await?;
    let key = PrivateKey::generate();
    for n in names {
        let (m, module) = bitwrk_host::local_articles::load(n)?;
        client.publish(&key, &m, &module).await.with_context(|| format!("publishing {n}"))?;
    }
    Ok(client)
}

/// A seller: sells `sells` (ARTICLE:PRICE) with `slots` worker slots, permitted by mandate.
pub fn seller(
    name: &str,
    dir: &Path,
    exchange: &str,
    sells: &[&str],
    slots: u32,
) -> anyhow::Result<Host> {
    let mut flags: Vec<String> = vec![
        "--ext-port".into(),
        "0".into(),
        "--ext-bind".into(),
        "127.0.0.1".into(),
        "--worker-slots".into(),
        slots.to_string(),
        "--mandate".into(),
        "sell:*:0".into(),
    ];
    for s in sells {
        flags.push("--sell".into());
        flags.push(s.to_string());
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    host(name, dir, exchange, &flags)
}

/// A buyer host that may buy anything up to `max_price` without asking.
pub fn buyer(dir: &Path, exchange: &str, max_price: u64) -> anyhow::Result<Host> {
    host("buyer", dir, exchange, &["--mandate", &format!("buy:*:{max_price}")])
}

/// The answer of a buy through the proxy: status, trade headers, and the output(s).
pub struct Bought {
    pub status: u16,
    pub tx: String,
    pub attempts: u32,
    pub sent_bytes: u64,
    pub input_bytes: u64,
    /// The one output (fetched from `/file/…`), or the JSON body for several / errors.
    pub body: Vec<u8>,
}

/// `POST /buy/{article}` with multipart fields, then follow the redirect to `/file/…`.
pub async fn buy(
    int_url: &str,
    article: &str,
    fields: Vec<(&str, Vec<u8>)>,
    price: Option<u64>,
) -> anyhow::Result<Bought> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let mut form = reqwest::multipart::Form::new();
    for (name, data) in fields {
        form = form.part(
            name.to_string(),
            reqwest::multipart::Part::bytes(data).file_name(name.to_string()),
        );
    }
    if let Some(p) = price {
        form = form.text("price", p.to_string());
    }
    let resp = http.post(format!("{int_url}/buy/{article}")).multipart(form).send().await?;
    let status = resp.status().as_u16();
    let h = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (tx, attempts, sent, input, location) = (
        h("x-bitwrk-tx"),
        h("x-bitwrk-attempts"),
        h("x-bitwrk-sent-bytes"),
        h("x-bitwrk-input-bytes"),
        h("location"),
    );
    let body = if status == 303 {
        http.get(format!("{int_url}{location}"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?
            .to_vec()
    } else {
        resp.bytes().await?.to_vec()
    };
    Ok(Bought {
        status,
        tx,
        attempts: attempts.parse().unwrap_or(0),
        sent_bytes: sent.parse().unwrap_or(0),
        input_bytes: input.parse().unwrap_or(0),
        body,
    })
}

/// Money is conserved: available + blocked + fees == created.
pub async fn assert_conserved(
    client: &ExchangeClient,
) -> anyhow::Result<bitwrk_protocol::api::LedgerView> {
    let l = client.ledger().await?;
    anyhow::ensure!(
        l.available_sat.0 + l.blocked_sat.0 + l.fees_sat.0 == l.created_sat.0,
        "money not conserved: {l:?}"
    );
    Ok(l)
}
