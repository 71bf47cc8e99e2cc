//! A minimal W3C WebDriver client over plain HTTP, enough to drive headless Chromium
//! through chromedriver: open a page, click, read the source, take a screenshot.
#![allow(dead_code)]

use super::mta::{free_port, wait_for};
use base64::Engine;
use serde_json::{Value, json};
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

pub const PROGRAMS: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromedriver"];

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and one browser session; both end on drop.
pub struct Browser {
    port: u16,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with an empty profile.
    pub fn start(language: &str) -> Browser {
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_for("chromedriver to listen", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=900,700",
            &format!("--lang={language}"),
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
                "prefs": {"intl.accept_languages": language},
            }
        }}});
        let mut browser = Browser {
            port,
            session: String::new(),
            driver,
            _profile: profile,
        };
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        // Chromium's --lang and language preference do not reliably reach Accept-Language
        // in headless mode; the DevTools protocol sets it for certain.
        let version = browser.call(
            "POST",
            &browser.session_path("/goog/cdp/execute"),
            Some(json!({"cmd": "Browser.getVersion", "params": {}})),
        );
        let agent = version["value"]["userAgent"]
            .as_str()
            .unwrap_or("Mozilla/5.0")
            .to_owned();
        browser.call(
            "POST",
            &browser.session_path("/goog/cdp/execute"),
            Some(json!({"cmd": "Emulation.setUserAgentOverride", "params": {"userAgent": agent, "acceptLanguage": language}})),
        );
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|value| panic!("{method} {path}: {value}"))
    }

    /// One WebDriver command; `Err` with the response when it reports an error.
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to chromedriver");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("send");
        let body = read_response(&mut stream);
        let value: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        match value["value"].get("error") {
            None => Ok(value),
            Some(_) => Err(value),
        }
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Makes the page `width` by `height` CSS pixels, as a screen that size shows it (a
    /// phone's below 600 pixels).
    pub fn viewport(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.session_path("/goog/cdp/execute"),
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600
                }}),
            ),
        );
    }

    /// Opens `url` and waits for it to load.
    pub fn open(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        );
    }

    /// Clicks the first element matching `css`; the navigation it starts has finished
    /// when this returns, as WebDriver waits for a page load after a click.
    pub fn click(&self, css: &str) {
        let found = self.call(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = found["value"][ELEMENT]
            .as_str()
            .expect("element id")
            .to_owned();
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            Some(json!({})),
        );
    }

    /// The current page's text as rendered, once it contains `needle`: a click that
    /// submits a form returns before the next page has loaded, so this waits for it.
    pub fn text_with(&self, needle: &str) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(
                &format!("a page showing {needle:?}"),
                Duration::from_secs(20),
                || {
                    last = self.text().unwrap_or_default();
                    last.contains(needle).then(|| last.clone())
                },
            )
        }));
        found.unwrap_or_else(|_| panic!("no page showed {needle:?}; the last one said: {last}"))
    }

    /// The current page's text, or `None` while the page is being replaced.
    fn text(&self) -> Option<String> {
        let body = json!({"using": "css selector", "value": "body"});
        let found = self
            .try_call("POST", &self.session_path("/element"), Some(body))
            .ok()?;
        let id = found["value"][ELEMENT].as_str()?.to_owned();
        let text = self
            .try_call(
                "GET",
                &self.session_path(&format!("/element/{id}/text")),
                None,
            )
            .ok()?;
        text["value"].as_str().map(str::to_owned)
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub fn screenshot(&self, path: &Path) {
        let shot = self.call("GET", &self.session_path("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["value"].as_str().expect("screenshot"))
            .expect("base64 PNG");
        std::fs::create_dir_all(path.parent().expect("folder")).expect("screenshot folder");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = self.session_path("");
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.call("DELETE", &path, None)
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Reads one HTTP response body, by its Content-Length or chunked; chromedriver keeps
/// connections open, so reading to the end would wait for its idle timeout.
fn read_response(stream: &mut TcpStream) -> String {
    let mut reader = std::io::BufReader::new(stream);
    let mut content_length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).expect("read header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            std::io::BufRead::read_line(&mut reader, &mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("chunk");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(content_length.expect("Content-Length"), 0);
        reader.read_exact(&mut body).expect("body");
    }
    String::from_utf8_lossy(&body).into_owned()
}
