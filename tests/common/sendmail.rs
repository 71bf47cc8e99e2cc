//! A private Sendmail 8.17 on loopback ports, relaying to `smtp-sink`, built from
//! `deploy/sendmail/optout-milter.mc`. Sendmail is unpacked, not installed (its package
//! conflicts with Postfix's): `scripts/install-sendmail.sh` puts it under [`ROOT`].
//!
//! Sendmail refuses to start until its host name is qualified, so it runs in a UTS
//! namespace of its own (`unshare --uts`) whose host name is `mta.test.example`.
#![allow(dead_code)]

use super::mta::{Sink, free_port, wait_for};
use std::{
    fs,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Where `scripts/install-sendmail.sh` unpacks Sendmail.
pub const ROOT: &str = "/var/lib/optout-milter-tests/sendmail-root";
const BINARY: &str = "/var/lib/optout-milter-tests/sendmail-root/usr/libexec/sendmail/sendmail";

pub const PROGRAMS: [&str; 4] = [
    BINARY,
    "/usr/bin/m4",
    "/usr/bin/unshare",
    "/usr/sbin/smtp-sink",
];

/// A running Sendmail; stopped on drop.
pub struct Sendmail {
    pub base: PathBuf,
    pub smtp_port: u16,
    pub sink: Sink,
    cf: PathBuf,
    process: Child,
}

impl Sendmail {
    /// Starts instance `name` whose milters are `filters`: `(name, port)` pairs in order,
    /// the first being optout-milter as `deploy/sendmail/optout-milter.mc` declares it.
    pub fn start(name: &str, filters: &[(&str, u16)]) -> Sendmail {
        let base = Path::new("/var/tmp/optout-milter-tests").join(name);
        let _ = fs::remove_dir_all(&base);
        let queue = base.join("queue");
        fs::create_dir_all(&queue).expect("queue dir");
        let sink = Sink::start(&base.join("sink"));
        let smtp_port = free_port();
        let mc = mc(filters, smtp_port, sink.port);
        fs::write(base.join("sendmail.mc"), &mc).expect("mc");
        let cf_dir = format!("{ROOT}/usr/share/sendmail/cf/");
        let out = Command::new("/usr/bin/m4")
            .arg(format!("-D_CF_DIR_={cf_dir}"))
            .arg(format!("{cf_dir}m4/cf.m4"))
            .arg(base.join("sendmail.mc"))
            .output()
            .expect("m4");
        assert!(
            out.status.success(),
            "m4: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cf = base.join("sendmail.cf");
        fs::write(&cf, &out.stdout).expect("cf");
        fs::write(base.join("aliases"), "").expect("aliases");
        let options = options(&base);
        let script = format!(
            "hostname mta.test.example && exec {BINARY} -C {} -bD {}",
            cf.display(),
            options.join(" ")
        );
        let process = Command::new("/usr/bin/unshare")
            .args(["--uts", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("start sendmail");
        let sendmail = Sendmail {
            base,
            smtp_port,
            sink,
            cf,
            process,
        };
        wait_for("Sendmail to listen", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", smtp_port)).ok()
        });
        sendmail
    }

    /// Whether Sendmail's queue is empty.
    pub fn queue_is_empty(&self) -> bool {
        fs::read_dir(self.base.join("queue")).map_or(true, |mut d| d.next().is_none())
    }
}

/// The test's .mc: the deployed one with loopback ports, a sink as smart host, and sender
/// domains that need not resolve (there is no DNS here).
fn mc(filters: &[(&str, u16)], smtp_port: u16, sink_port: u16) -> String {
    let deployed = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/sendmail/optout-milter.mc"),
    )
    .expect("deploy/sendmail/optout-milter.mc");
    let mut mc = deployed
        .replace(
            "define(`confDOMAIN_NAME', `mta.example.com')",
            "define(`confDOMAIN_NAME', `mta.test.example')",
        )
        .replace("TCP $h 25", &format!("TCP $h {sink_port}"))
        .replace("Port=25", &format!("Port={smtp_port}"));
    let (_, optout_port) = filters[0];
    mc = mc.replace(
        "S=inet:8899@127.0.0.1",
        &format!("S=inet:{optout_port}@127.0.0.1"),
    );
    let mut extra = String::from("FEATURE(`accept_unresolvable_domains')dnl\n");
    for (name, port) in &filters[1..] {
        extra.push_str(&format!(
            "INPUT_MAIL_FILTER(`{name}', `S=inet:{port}@127.0.0.1, F=T, T=C:10s;S:10s;R:10s;E:60s')dnl\n"
        ));
    }
    mc.replace("MAILER(`smtp')dnl", &format!("{extra}MAILER(`smtp')dnl"))
}

/// Paths of the private instance, given on the command line.
fn options(base: &Path) -> Vec<String> {
    [
        ("QueueDirectory", base.join("queue")),
        ("PidFile", base.join("sendmail.pid")),
        ("StatusFile", base.join("statistics")),
        ("AliasFile", base.join("aliases")),
    ]
    .into_iter()
    .map(|(name, path)| format!("-O {name}={}", path.display()))
    .chain(["-O DefaultUser=nobody".to_owned()])
    .collect()
}

impl Drop for Sendmail {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl super::mta::Mta for Sendmail {
    fn name(&self) -> &'static str {
        "Sendmail"
    }
    fn smtp_port(&self) -> u16 {
        self.smtp_port
    }
    fn sink(&self) -> &Sink {
        &self.sink
    }
    fn queue_is_empty(&self) -> bool {
        Sendmail::queue_is_empty(self)
    }
}
