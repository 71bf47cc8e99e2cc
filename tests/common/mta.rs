//! Helpers for tests that drive real programs: the optout-milter binary as a daemon, a
//! plain SMTP client, waiting for conditions, and the rule for skipping.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Whether the real parts a test needs are here. Without them the test says it was skipped
/// and why; under CI (`CI=true`) they are required and the test fails instead.
pub fn require(test: &str, programs: &[&str]) -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let not_root = (!root).then_some("it must run as root to start a private MTA");
    require_parts(test, programs, not_root)
}

/// Like [`require`], for tests that need programs but not root.
pub fn require_programs(test: &str, programs: &[&str]) -> bool {
    require_parts(test, programs, None)
}

fn require_parts(test: &str, programs: &[&str], other: Option<&str>) -> bool {
    let mut missing: Vec<String> = programs
        .iter()
        .filter(|p| !Path::new(p).exists())
        .map(|p| format!("{p} is not installed"))
        .collect();
    missing.extend(other.map(str::to_owned));
    if missing.is_empty() {
        return true;
    }
    let reason = missing.join("; ");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: required under CI, but {reason}");
    }
    eprintln!("SKIPPED {test}: {reason}");
    false
}

/// Polls `condition` until it gives a value, or fails the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The optout-milter binary running `serve` with a config file of its own.
pub struct Daemon {
    pub config: PathBuf,
    pub port: u16,
    child: Child,
}

impl Daemon {
    /// Writes `config_text` (with `@PORT@` replaced by a free port) to `dir` and starts
    /// `optout-milter serve`, waiting until it accepts connections.
    pub fn start(dir: &Path, config_text: &str) -> Daemon {
        Self::start_limited(dir, config_text, None)
    }

    /// Like [`start`](Self::start), with the daemon's file descriptor limit lowered to
    /// `nofile` (through `prlimit`) when given.
    pub fn start_limited(dir: &Path, config_text: &str, nofile: Option<u32>) -> Daemon {
        let port = free_port();
        let config = dir.join("optout-milter.toml");
        std::fs::write(&config, config_text.replace("@PORT@", &port.to_string())).expect("config");
        let child = spawn(&config, dir, nofile);
        let daemon = Daemon {
            config,
            port,
            child,
        };
        wait_for("the milter to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        daemon
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        let dir = self.config.parent().expect("config dir");
        std::fs::read_to_string(dir.join("milter.log")).unwrap_or_default()
    }

    /// Runs a CLI command against the same config; panics if it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_optout-milter"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("OPTOUT_MILTER_LOG", "warn")
            .output()
            .expect("run optout-milter");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills the daemon outright (SIGKILL, as a crash or an OOM kill would), then starts it
    /// again on the same config and port.
    pub fn crash_and_restart(&mut self) {
        self.kill9();
        self.restart();
    }

    /// Kills the daemon outright (SIGKILL) and waits until it is gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the daemon again (after [`kill9`](Self::kill9)) on the same config and port.
    pub fn restart(&mut self) {
        let dir = self.config.parent().expect("config dir").to_owned();
        self.child = spawn(&self.config, &dir, None);
        let port = self.port;
        wait_for(
            "the milter to listen again",
            Duration::from_secs(20),
            || TcpStream::connect(("127.0.0.1", port)).ok(),
        );
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("daemon status")
    }

    /// Waits for the daemon to exit by itself, and returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        wait_for("the daemon to exit", timeout, || {
            self.child.try_wait().expect("daemon status")
        })
    }

    /// Stops the daemon the way systemd does (SIGTERM) and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Path, dir: &Path, nofile: Option<u32>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("milter.log"))
        .expect("log");
    let binary = env!("CARGO_BIN_EXE_optout-milter");
    let mut command = match nofile {
        None => Command::new(binary),
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(binary);
            c
        }
    };
    command
        .arg("--config")
        .arg(config)
        .args(["serve", "--init"])
        .env("OPTOUT_MILTER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start optout-milter")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One SMTP reply: code and text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// The replies of one SMTP transaction.
#[derive(Debug)]
pub struct Transaction {
    pub rcpts: Vec<(String, Reply)>,
    /// The reply to the end of data, if DATA was reached.
    pub data: Option<Reply>,
}

/// Sends one message over SMTP, recording the reply to every recipient. DATA is sent when
/// at least one recipient was accepted. The greeting, EHLO, MAIL and DATA must succeed.
pub fn smtp_send(port: u16, from: &str, rcpts: &[&str], message: &str) -> Transaction {
    let steps = smtp_session(port, from, rcpts, message);
    let reply = |step: &str| {
        steps
            .iter()
            .find(|(s, _)| s == step)
            .map(|(_, r)| r.clone())
    };
    for (step, code) in [("greeting", 220), ("EHLO", 250), ("MAIL", 250)] {
        let got = reply(step);
        assert_eq!(got.as_ref().map(|r| r.code), Some(code), "{step}: {got:?}");
    }
    let rcpts: Vec<(String, Reply)> = steps
        .iter()
        .filter_map(|(step, r)| Some((step.strip_prefix("RCPT ")?.to_owned(), r.clone())))
        .collect();
    if let Some(data) = reply("DATA") {
        assert_eq!(data.code, 354, "DATA: {data:?}");
    }
    Transaction {
        rcpts,
        data: reply("end of data"),
    }
}

/// The reply codes of an SMTP transaction that may fail anywhere. Nothing is asserted.
pub fn smtp_codes(port: u16, from: &str, rcpts: &[&str], message: &str) -> Vec<(String, u16)> {
    smtp_session(port, from, rcpts, message)
        .into_iter()
        .map(|(step, reply)| (step, reply.code))
        .collect()
}

/// One SMTP session, each step with its reply: greeting, EHLO, MAIL, then (if MAIL was
/// accepted) `RCPT <address>` for each recipient, then DATA and the end of data when a
/// recipient was accepted.
fn smtp_session(port: u16, from: &str, rcpts: &[&str], message: &str) -> Vec<(String, Reply)> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the MTA");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut command = |line: &str| -> Reply {
        if !line.is_empty() {
            writer
                .write_all(format!("{line}\r\n").as_bytes())
                .expect("write");
        }
        read_reply(&mut reader)
    };
    let mut steps = vec![("greeting".to_owned(), command(""))];
    steps.push(("EHLO".into(), command("EHLO client.test.example")));
    let mail = command(&format!("MAIL FROM:<{from}>"));
    let mail_accepted = mail.code == 250;
    steps.push(("MAIL".into(), mail));
    if mail_accepted {
        let mut accepted = false;
        for rcpt in rcpts {
            let reply = command(&format!("RCPT TO:<{rcpt}>"));
            accepted |= reply.code == 250;
            steps.push((format!("RCPT {rcpt}"), reply));
        }
        if accepted {
            let data = command("DATA");
            let go = data.code == 354;
            steps.push(("DATA".into(), data));
            if go {
                let dotted: Vec<String> = message
                    .replace("\r\n", "\n")
                    .split('\n')
                    .map(|l| {
                        if l.starts_with('.') {
                            format!(".{l}")
                        } else {
                            l.to_owned()
                        }
                    })
                    .collect();
                steps.push((
                    "end of data".into(),
                    command(&format!("{}\r\n.", dotted.join("\r\n"))),
                ));
            }
        }
    }
    command("QUIT");
    steps
}

fn read_reply(reader: &mut impl BufRead) -> Reply {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read reply");
        let line = line.trim_end();
        assert!(line.len() >= 3, "short SMTP reply {line:?}");
        text.push_str(line.get(4..).unwrap_or(""));
        if line.as_bytes().get(3) != Some(&b'-') {
            return Reply {
                code: line[..3].parse().expect("reply code"),
                text,
            };
        }
        text.push('\n');
    }
}

/// One HTTP/1.1 exchange over a fresh connection: status code and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::Read;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web front");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// The first `List-Unsubscribe` URI of `scheme` in a delivered message.
pub fn unsubscribe_uri(message: &str, scheme: &str) -> String {
    let start = message
        .find("List-Unsubscribe: ")
        .expect("a List-Unsubscribe header");
    let header: String = message[start..]
        .lines()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
        .map(|(_, l)| l.trim())
        .collect();
    header
        .split(['<', '>'])
        .find(|part| part.starts_with(scheme))
        .unwrap_or_else(|| panic!("no {scheme} URI in {header}"))
        .to_owned()
}

/// A message as it reached the sink: envelope recipients and content.
#[derive(Debug)]
pub struct Delivered {
    pub rcpts: Vec<String>,
    pub text: String,
}

/// Postfix's `smtp-sink` on a loopback port, keeping each message in a file; the mail
/// every test MTA relays to. Killed on drop.
pub struct Sink {
    pub port: u16,
    dir: PathBuf,
    process: Child,
}

impl Sink {
    /// Starts a sink that writes to `dir` (created).
    pub fn start(dir: &Path) -> Sink {
        std::fs::create_dir_all(dir).expect("sink dir");
        chown(dir, "nobody");
        let port = free_port();
        let process = Command::new("/usr/sbin/smtp-sink")
            .args(["-u", "nobody", "-d"])
            .arg(format!("{}/msg.", dir.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("128")
            .spawn()
            .expect("start smtp-sink");
        wait_for("smtp-sink to listen", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Sink {
            port,
            dir: dir.to_owned(),
            process,
        }
    }

    /// Everything the sink received so far.
    pub fn delivered(&self) -> Vec<Delivered> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let rcpts = text
                .lines()
                .take_while(|l| !l.is_empty())
                .filter_map(|l| l.strip_prefix("X-Rcpt-Args: "))
                .map(|args| {
                    let addr = args.split_whitespace().next().unwrap_or("");
                    addr.trim_matches(['<', '>']).to_owned()
                })
                .collect();
            out.push(Delivered { rcpts, text });
        }
        out
    }

    /// Waits until a delivered message contains `marker`, and returns it.
    pub fn wait_delivered(&self, marker: &str) -> Delivered {
        wait_for(
            &format!("a delivery containing {marker:?}"),
            Duration::from_secs(60),
            || {
                self.delivered()
                    .into_iter()
                    .find(|d| d.text.contains(marker))
            },
        )
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// `chown user path`.
pub fn chown(path: &Path, user: &str) {
    let ok = Command::new("chown")
        .arg(user)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown {user} {}", path.display());
}

/// What the journey and failure tests need of an MTA, Postfix or Sendmail.
pub trait Mta {
    fn name(&self) -> &'static str;
    fn smtp_port(&self) -> u16;
    /// The sink the MTA relays everything to.
    fn sink(&self) -> &Sink;
    fn queue_is_empty(&self) -> bool;

    /// Everything the sink received so far.
    fn delivered(&self) -> Vec<Delivered> {
        self.sink().delivered()
    }

    /// Waits until a delivered message contains `marker`, and returns it.
    fn wait_delivered(&self, marker: &str) -> Delivered {
        self.sink().wait_delivered(marker)
    }
}

/// The daemon config most MTA tests share: the milter on `@PORT@` (filled in by
/// [`Daemon::start`]), the store and the token key in the test's folder, news@example.com
/// sending the list weekly-news, and unsubscribe headers.
pub const DAEMON_CONFIG: &str = r#"
[milter]
socket = "inet:127.0.0.1:@PORT@"

[store]
url = "sqlite:@DIR@/consent.db"

[[classify.senders]]
sender = "news@example.com"
list = "weekly-news"

[unsubscribe]
https_base = "https://unsubscribe.example.com"
mailto = "unsubscribe@example.com"
generate_missing_key = true

[[unsubscribe.keys]]
id = 1
file = "@DIR@/token.key"
"#;

/// [`DAEMON_CONFIG`] with `extra` sections after it, its files in `dir`.
pub fn daemon_config(dir: &Path, extra: &str) -> String {
    (DAEMON_CONFIG.to_owned() + extra).replace("@DIR@", &dir.to_string_lossy())
}

/// Delivers `message` over LMTP to the server on `port`; the replies after the data, one
/// per recipient.
pub fn lmtp_send(port: u16, from: &str, rcpts: &[&str], message: &str) -> Vec<Reply> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to LMTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut send = |line: &str| {
        writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write")
    };
    assert_eq!(read_reply(&mut reader).code, 220);
    send("LHLO client.test.example");
    assert_eq!(read_reply(&mut reader).code, 250);
    send(&format!("MAIL FROM:<{from}>"));
    assert_eq!(read_reply(&mut reader).code, 250);
    for rcpt in rcpts {
        send(&format!("RCPT TO:<{rcpt}>"));
        assert_eq!(read_reply(&mut reader).code, 250, "RCPT {rcpt}");
    }
    send("DATA");
    assert_eq!(read_reply(&mut reader).code, 354);
    for line in message.replace("\r\n", "\n").lines() {
        let stuffed = if line.starts_with('.') {
            format!(".{line}")
        } else {
            line.to_owned()
        };
        send(&stuffed);
    }
    send(".");
    let replies = rcpts.iter().map(|_| read_reply(&mut reader)).collect();
    send("QUIT");
    replies
}
