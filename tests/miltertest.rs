//! The scripts under `tests/miltertest/`, run by Debian's `miltertest`: an independent
//! milter client (libmilter's protocol code, scripted in Lua) against the real daemon.
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::mta::{Daemon, daemon_config, require_programs};
use std::{path::Path, process::Command};

#[test]
fn miltertest_scripts_pass() {
    if !require_programs("miltertest_scripts_pass", &["/usr/bin/miltertest"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let milter = Daemon::start(dir.path(), &daemon_config(dir.path(), ""));
    milter.cli(&[
        "consent",
        "set",
        "gone@example.org",
        "--value",
        "n",
        "--scope",
        "weekly-news",
    ]);
    milter.cli(&[
        "consent",
        "set",
        "left-deals@example.org",
        "--value",
        "n",
        "--scope",
        "deals",
    ]);
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/miltertest");
    for script in ["negotiate.lua", "refusal.lua", "headers.lua", "removal.lua"] {
        let out = Command::new("/usr/bin/miltertest")
            .arg("-s")
            .arg(scripts.join(script))
            .env("MILTER_SOCKET", format!("inet:{}@127.0.0.1", milter.port))
            .env("MILTERTEST_DIR", &scripts)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    milter.stop();
}
