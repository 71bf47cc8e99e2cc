//! The web front speaking HTTPS itself, with a certificate and key from PEM files, checked
//! with curl as a client would.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::mta::{Daemon, free_port, require_programs, wait_for};
use std::{process::Command, time::Duration};

const CONFIG: &str = r#"
[milter]
socket = "inet:127.0.0.1:@PORT@"

[store]
url = "sqlite:@DIR@/consent.db"

[unsubscribe]
https_base = "https://localhost"
mailto = "unsubscribe@example.com"
generate_missing_key = true

[[unsubscribe.keys]]
id = 1
file = "@DIR@/token.key"

[web]
listen = "127.0.0.1:@WEB_PORT@"
tls_cert = "@DIR@/cert.pem"
tls_key = "@DIR@/key.pem"
"#;

#[test]
fn one_click_over_https_with_the_configured_certificate() {
    if !require_programs(
        "one_click_over_https_with_the_configured_certificate",
        &["/usr/bin/openssl", "/usr/bin/curl"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("/usr/bin/openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let web_port = free_port();
    let config = CONFIG
        .replace("@DIR@", &dir.path().to_string_lossy())
        .replace("@WEB_PORT@", &web_port.to_string());
    let daemon = Daemon::start(dir.path(), &config);
    wait_for("the web front", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", web_port)).ok()
    });
    let minted = daemon.cli(&["token", "mint", "reader@example.org"]);
    let url = minted
        .lines()
        .find_map(|l| l.strip_prefix("https: "))
        .unwrap()
        .replace(
            "https://localhost",
            &format!("https://localhost:{web_port}"),
        );

    let curl = |extra: &[&str]| {
        let out = Command::new("/usr/bin/curl")
            .args(["-sS", "--cacert"])
            .arg(&cert)
            .args([
                "--resolve",
                &format!("localhost:{web_port}:127.0.0.1"),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The certificate verifies against itself as the CA: the server really serves it.
    assert_eq!(curl(&[]).0, "200");
    let (status, err) = curl(&["-X", "POST", "-d", "List-Unsubscribe=One-Click"]);
    assert_eq!(status, "200", "{err}");
    assert!(
        daemon
            .cli(&["consent", "get", "reader@example.org"])
            .contains("\t*\tn\tone-click\t")
    );
    // Plain HTTP on the TLS port is not served.
    let plain = Command::new("/usr/bin/curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{web_port}/healthz"),
        ])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    daemon.stop();
}
