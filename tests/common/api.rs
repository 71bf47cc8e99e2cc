//! The admin API as its callers use it: two tokens written into every test's directory,
//! the `[api]` section that names them, and an HTTP/1.1 client over a real connection.

use std::{net::SocketAddr, path::Path};

/// A read-write token, in `@DIR@/crm.token` (its name: `crm`).
pub const WRITE: &str = "rw-3f6c1d0a9b8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a";
/// A read token, in `@DIR@/app.token` (its name: `app`).
pub const READ: &str = "ro-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";

/// The `[api]` section for a test: port 0, the two tokens above.
pub const CONFIG: &str = r#"
[api]
listen = "127.0.0.1:0"
max_import_bytes = 4194304

[[api.tokens]]
file = "@DIR@/crm.token"
rights = "read-write"

[[api.tokens]]
file = "@DIR@/app.token"
rights = "read"
"#;

/// Writes the token files of [`CONFIG`] into `dir`, owner-only.
pub fn write_tokens(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for (name, token) in [("crm.token", WRITE), ("app.token", READ)] {
        let path = dir.join(name);
        std::fs::write(&path, format!("{token}\n")).expect("write a token file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod a token file");
    }
}

/// The `[consent]` section that names the erasure key [`write_erasure_key`] writes.
pub const ERASURE: &str = "\n[consent]\nerasure_key = \"@DIR@/erasure.key\"\n";

/// Writes an erasure key (32 bytes, owner-only) into `dir`.
pub fn write_erasure_key(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("erasure.key");
    std::fs::write(&path, [42u8; 32]).expect("write the erasure key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the erasure key");
}

/// A response, whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a connection of its own; `token` goes in `Authorization: Bearer`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Response {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the API");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let (content_type, bytes) = body.unwrap_or(("text/plain", Vec::new()));
    let request = builder
        .header("content-type", content_type)
        .body(Full::new(hyper::body::Bytes::from(bytes)))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the whole body")
        .to_bytes()
        .to_vec();
    Response {
        status,
        headers,
        body,
    }
}

/// A JSON body.
pub fn json(value: &serde_json::Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", value.to_string().into_bytes()))
}
