//! optout-milter first, OpenDKIM second, behind a real Postfix: the unsubscribe headers are
//! added before signing, so the signature covers them, and an independent verifier
//! (dkimpy) accepts it.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{
    mta::{Daemon, free_port, require, smtp_send, wait_for},
    postfix::{PROGRAMS, Postfix},
};
use std::{
    fs,
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

const CONFIG: &str = r#"
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

const VERIFIER: &str = "/usr/lib/python3/dist-packages/dkim/__init__.py";

struct OpenDkim(Child);

impl Drop for OpenDkim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts OpenDKIM from `deploy/opendkim/opendkim.conf` with a fresh key in `dir`.
fn opendkim(dir: &Path) -> (OpenDkim, u16) {
    let run = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
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
    .unwrap()
    .replace(
        "/etc/opendkim/keys/example.com/mail.private",
        &dir.join("mail.private").to_string_lossy(),
    )
    .replace("inet:8891@127.0.0.1", &format!("inet:{port}@127.0.0.1"));
    let conf_path = dir.join("opendkim.conf");
    fs::write(&conf_path, conf).unwrap();
    let child = Command::new("/usr/sbin/opendkim")
        .args(["-f", "-x"])
        .arg(&conf_path)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let dkim = OpenDkim(child);
    wait_for("OpenDKIM to listen", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (dkim, port)
}

#[test]
fn opendkim_after_optout_milter_signs_both_unsubscribe_headers() {
    let programs = [
        PROGRAMS.as_slice(),
        &["/usr/sbin/opendkim", "/usr/sbin/opendkim-genkey", VERIFIER],
    ]
    .concat();
    if !require(
        "opendkim_after_optout_milter_signs_both_unsubscribe_headers",
        &programs,
    ) {
        return;
    }
    // OpenDKIM refuses keys below a world-writable directory such as /var/tmp.
    let dir = Path::new("/var/lib/optout-milter-tests/dkim");
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let (_dkim, dkim_port) = opendkim(dir);
    let milter_dir = tempfile::tempdir().unwrap();
    let milter = Daemon::start(
        milter_dir.path(),
        &CONFIG.replace("@DIR@", &milter_dir.path().to_string_lossy()),
    );
    let milters = format!("inet:127.0.0.1:{}, inet:127.0.0.1:{dkim_port}", milter.port);
    let postfix = Postfix::start("dkim", &milters);

    let message = "From: News <news@example.com>\nTo: reader@example.org\nSubject: This week\n\
                   Date: Sat, 28 Nov 2026 12:00:00 +0000\nMessage-ID: <dkim-1@test.example>\n\nHello.\n";
    let sent = smtp_send(
        postfix.smtp_port,
        "news@example.com",
        &["reader@example.org"],
        message,
    );
    assert_eq!(sent.data.as_ref().map(|r| r.code), Some(250), "{sent:?}");
    let delivered = postfix.wait_delivered("dkim-1@test.example");
    assert!(
        delivered
            .text
            .contains("\nList-Unsubscribe: <https://unsubscribe.example.com/u/"),
        "{}",
        delivered.text
    );
    assert!(
        delivered
            .text
            .contains("\nList-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{}",
        delivered.text
    );

    // The sink's dump starts with its own envelope lines; the message follows them.
    let message_start = delivered.text.find("Received:").unwrap();
    let signed = dir.join("delivered.eml");
    let message = &delivered.text[message_start..];
    fs::write(&signed, message).unwrap();
    let verify = |path: &Path| {
        Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dkim/verify.py"))
            .arg(path)
            .arg(dir.join("mail.txt"))
            .output()
            .unwrap()
    };
    // The verifier really checks these headers: a changed link breaks the signature.
    let tampered = dir.join("tampered.eml");
    fs::write(&tampered, message.replacen("/u/", "/u/x", 1)).unwrap();
    assert!(
        !verify(&tampered).status.success(),
        "a tampered List-Unsubscribe verified"
    );
    let out = verify(&signed);
    let report = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        out.status.success(),
        "{report}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        delivered.text
    );
    let signed_headers: Vec<&str> = report
        .lines()
        .find_map(|l| l.strip_prefix("h="))
        .unwrap()
        .split(':')
        .collect();
    assert!(
        signed_headers.contains(&"list-unsubscribe"),
        "{signed_headers:?}"
    );
    assert!(
        signed_headers.contains(&"list-unsubscribe-post"),
        "{signed_headers:?}"
    );
    milter.stop();
}
