//! A private Postfix instance on loopback ports, relaying to Postfix's `smtp-sink`, with
//! the milter settings taken from `deploy/postfix/main.cf`.
#![allow(dead_code)]

use super::mta::{Sink, chown, free_port, wait_for};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

pub const PROGRAMS: [&str; 3] = [
    "/usr/sbin/postfix",
    "/usr/sbin/smtp-sink",
    "/usr/sbin/sendmail",
];

const ROOT: &str = "/var/tmp/optout-milter-tests";

/// A running instance. Stopped, and its sink killed, on drop.
pub struct Postfix {
    pub base: PathBuf,
    pub etc: PathBuf,
    pub smtp_port: u16,
    pub sink: Sink,
}

impl Postfix {
    /// Starts instance `name` whose milters are `milters` (replacing the socket of
    /// `deploy/postfix/main.cf`).
    pub fn start(name: &str, milters: &str) -> Postfix {
        Self::start_with(name, milters, "", "")
    }

    /// Like [`start`](Self::start), with `main_extra` appended to main.cf and
    /// `master_extra` to master.cf.
    pub fn start_with(name: &str, milters: &str, main_extra: &str, master_extra: &str) -> Postfix {
        let base = Path::new(ROOT).join(name);
        let _ = Command::new("/usr/sbin/postfix")
            .args(["-c", &base.join("etc").to_string_lossy(), "stop"])
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&base);
        let etc = base.join("etc");
        for dir in [&etc, &base.join("spool"), &base.join("data")] {
            fs::create_dir_all(dir).expect("instance dirs");
        }
        chown(&base.join("data"), "postfix");
        register_config_dir(&etc);

        let smtp_port = free_port();
        let sink = Sink::start(&base.join("sink"));
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let read = |p: &str| fs::read_to_string(manifest.join(p)).expect(p);
        let deploy = read("deploy/postfix/main.cf").replace("inet:127.0.0.1:8899", milters);
        let main_cf = read("tests/postfix/main.cf")
            .replace("@BASE@", &base.to_string_lossy())
            .replace("@SINK_PORT@", &sink.port.to_string())
            + "\n# From deploy/postfix/main.cf:\n"
            + &deploy
            + main_extra;
        fs::write(etc.join("main.cf"), main_cf).expect("main.cf");
        let master_cf = read("tests/postfix/master.cf")
            .replace("@SMTP_PORT@", &smtp_port.to_string())
            + master_extra;
        fs::write(etc.join("master.cf"), master_cf).expect("master.cf");

        let postfix = Postfix {
            base,
            etc,
            smtp_port,
            sink,
        };
        postfix.postfix(&["start"]);
        wait_for("Postfix to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", smtp_port)).ok()
        });
        postfix
    }

    fn postfix(&self, args: &[&str]) {
        let out = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(&self.etc)
            .args(args)
            .output()
            .expect("run postfix");
        assert!(
            out.status.success(),
            "postfix {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Submits a message with the `sendmail` command (local submission via pickup).
    pub fn sendmail(&self, from: &str, rcpts: &[&str], message: &str) {
        use std::io::Write;
        let mut child = Command::new("/usr/sbin/sendmail")
            .arg("-C")
            .arg(&self.etc)
            .args(["-f", from])
            .args(rcpts)
            .stdin(Stdio::piped())
            .spawn()
            .expect("run sendmail");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(message.as_bytes())
            .expect("write message");
        assert!(child.wait().expect("sendmail").success(), "sendmail failed");
    }

    /// The instance's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.base.join("maillog")).unwrap_or_default()
    }

    /// Waits for a log line containing every one of `needles`, and returns it.
    pub fn wait_log(&self, needles: &[&str]) -> String {
        wait_for(
            &format!("a log line with {needles:?}"),
            Duration::from_secs(60),
            || {
                self.log()
                    .lines()
                    .find(|l| needles.iter().all(|n| l.contains(n)))
                    .map(str::to_owned)
            },
        )
    }

    /// Whether the queue is empty (`postqueue -p`).
    pub fn queue_is_empty(&self) -> bool {
        let out = Command::new("/usr/sbin/postqueue")
            .arg("-c")
            .arg(&self.etc)
            .arg("-p")
            .output()
            .expect("postqueue");
        String::from_utf8_lossy(&out.stdout).contains("Mail queue is empty")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(&self.etc)
            .arg("stop")
            .output();
    }
}

/// Postfix's set-gid commands (postdrop, postqueue) accept `-c DIR` only for directories
/// listed in `alternate_config_directories` of the default main.cf; add ours there.
fn register_config_dir(etc: &Path) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let default = Path::new("/etc/postfix/main.cf");
    if !default.exists() {
        fs::write(default, "compatibility_level = 3.6\n").expect("/etc/postfix/main.cf");
    }
    let current = Command::new("/usr/sbin/postconf")
        .args(["-h", "alternate_config_directories"])
        .output()
        .expect("postconf");
    let current = String::from_utf8_lossy(&current.stdout).trim().to_owned();
    let dir = etc.to_string_lossy();
    if current.split([',', ' ']).any(|d| d == dir) {
        return;
    }
    let value = if current.is_empty() {
        dir.to_string()
    } else {
        format!("{current}, {dir}")
    };
    let ok = Command::new("/usr/sbin/postconf")
        .arg("-e")
        .arg(format!("alternate_config_directories = {value}"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot register {dir} in /etc/postfix/main.cf");
}

impl super::mta::Mta for Postfix {
    fn name(&self) -> &'static str {
        "Postfix"
    }
    fn smtp_port(&self) -> u16 {
        self.smtp_port
    }
    fn sink(&self) -> &Sink {
        &self.sink
    }
    fn queue_is_empty(&self) -> bool {
        Postfix::queue_is_empty(self)
    }
}
