//! OpenDKIM as the signer after optout-milter, run from `deploy/opendkim/opendkim.conf`,
//! and dkimpy as the independent verifier.
#![allow(dead_code)]

use super::mta::{free_port, wait_for};
use std::{
    fs,
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

pub const PROGRAMS: [&str; 3] = [
    "/usr/sbin/opendkim",
    "/usr/sbin/opendkim-genkey",
    "/usr/lib/python3/dist-packages/dkim/__init__.py",
];

/// A running OpenDKIM; killed on drop.
pub struct OpenDkim(Child);

impl Drop for OpenDkim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts OpenDKIM from `deploy/opendkim/opendkim.conf` with a fresh key in `dir`
/// (which must not lie below a world-writable directory: OpenDKIM refuses such keys).
pub fn start(dir: &Path) -> (OpenDkim, u16) {
    let run = |cmd: &mut Command| assert!(cmd.status().expect("run").success(), "{cmd:?}");
    run(Command::new("/usr/sbin/opendkim-genkey")
        .args(["-b", "2048", "-d", "example.com", "-s", "mail", "-D"])
        .arg(dir));
    run(Command::new("chown")
        .arg("opendkim")
        .arg(dir.join("mail.private")));
    let port = free_port();
    let conf = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/opendkim/opendkim.conf"),
    )
    .expect("deploy/opendkim/opendkim.conf")
    .replace(
        "/etc/opendkim/keys/example.com/mail.private",
        &dir.join("mail.private").to_string_lossy(),
    )
    .replace("inet:8891@127.0.0.1", &format!("inet:{port}@127.0.0.1"));
    let conf_path = dir.join("opendkim.conf");
    fs::write(&conf_path, conf).expect("opendkim.conf");
    let child = Command::new("/usr/sbin/opendkim")
        .args(["-f", "-x"])
        .arg(&conf_path)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start opendkim");
    let dkim = OpenDkim(child);
    wait_for("OpenDKIM to listen", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (dkim, port)
}

/// Verifies the DKIM signature of `message` with dkimpy, the key of `dir` standing in
/// for DNS. Returns whether it verified and the signed header names (lower case).
pub fn verify(dir: &Path, message: &str) -> (bool, Vec<String>) {
    let file = dir.join(format!("verify-{}.eml", std::process::id()));
    fs::write(&file, message).expect("message file");
    let out = Command::new("/usr/bin/python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dkim/verify.py"))
        .arg(&file)
        .arg(dir.join("mail.txt"))
        .output()
        .expect("run verify.py");
    let report = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let signed = report
        .lines()
        .find_map(|l| l.strip_prefix("h="))
        .map(|h| h.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    (out.status.success(), signed)
}

/// The message part of a sink dump: the sink's envelope lines come first.
pub fn message_of(dump: &str) -> &str {
    &dump[dump.find("Received:").expect("a Received header")..]
}
