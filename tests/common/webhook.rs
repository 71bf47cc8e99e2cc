//! A webhook receiver for the tests: a real HTTP server on a loopback port that verifies
//! each request's Standard Webhooks signature with its own HMAC (not the daemon's code),
//! can be told to fail, and keeps every attempt and every accepted event.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

/// The secret's bytes, and the file the daemon reads it from.
const SECRET: [u8; 32] = *b"the webhook secret of the tests!";

/// Writes the secret file (`whsec_` and base64, owner-only) into `dir`.
pub fn write_secret(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("hook.secret");
    std::fs::write(&path, format!("whsec_{}\n", STANDARD.encode(SECRET))).expect("secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// The `[[webhooks]]` section for a receiver at `url`, named `name`.
pub fn config(url: &str, name: &str) -> String {
    format!(
        "\n[[webhooks]]\nurl = \"{url}\"\nname = \"{name}\"\nsecret_file = \"@DIR@/hook.secret\"\nretry_for = \"1h\"\ntimeout = \"5s\"\n"
    )
}

/// What the receiver saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every attempt: its `webhook-id` and whether it was accepted.
    pub attempts: Vec<(String, bool)>,
    /// Accepted events by id, each with how many times it was accepted.
    pub accepted: BTreeMap<String, (serde_json::Value, usize)>,
    /// Ids in the order they were first accepted.
    pub order: Vec<String>,
    pub bad_signatures: usize,
}

struct State {
    seen: Seen,
    /// Answer 500 to this many more requests.
    fail_next: usize,
    /// Answer 503 to every request.
    refuse: bool,
}

/// The running receiver; it stops with the test process.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// Starts it on a thread and runtime of its own, so sync and async tests can use it.
    pub fn start() -> Receiver {
        let state = Arc::new(Mutex::new(State {
            seen: Seen::default(),
            fail_next: 0,
            refuse: false,
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let shared = state.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().route(
                    "/hook",
                    axum::routing::post(
                        move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                            let shared = shared.clone();
                            async move {
                                axum::http::StatusCode::from_u16(receive(&shared, &headers, &body))
                                    .expect("a status")
                            }
                        },
                    ),
                );
                axum::serve(listener, app).await.expect("serve");
            });
        });
        Receiver { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn fail_next(&self, n: usize) {
        self.state.lock().expect("receiver state").fail_next = n;
    }

    pub fn refuse(&self, refuse: bool) {
        self.state.lock().expect("receiver state").refuse = refuse;
    }

    /// Reads what was seen so far.
    pub fn seen<T>(&self, read: impl FnOnce(&Seen) -> T) -> T {
        read(&self.state.lock().expect("receiver state").seen)
    }
}

fn receive(state: &Mutex<State>, headers: &axum::http::HeaderMap, body: &[u8]) -> u16 {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let mut state = state.lock().expect("receiver state");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let fresh = timestamp
        .parse::<u64>()
        .is_ok_and(|t| t.abs_diff(now) <= 300);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&SECRET).expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    // The header may list several signatures, space-separated.
    if !fresh || !signature.split(' ').any(|s| s == expected) {
        state.seen.bad_signatures += 1;
        state.seen.attempts.push((id, false));
        return 401;
    }
    if state.refuse {
        state.seen.attempts.push((id, false));
        return 503;
    }
    if state.fail_next > 0 {
        state.fail_next -= 1;
        state.seen.attempts.push((id, false));
        return 500;
    }
    let event: serde_json::Value = serde_json::from_slice(body).expect("a JSON event");
    state.seen.attempts.push((id.clone(), true));
    let seen = &mut state.seen;
    match seen.accepted.get_mut(&id) {
        Some((_, times)) => *times += 1,
        None => {
            seen.order.push(id.clone());
            seen.accepted.insert(id, (event, 1));
        }
    }
    200
}
