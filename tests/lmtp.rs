//! The LMTP intake in-process, over a real TCP connection: what an MTA's LMTP client
//! sends (pipelined commands, dot-stuffed data, several recipients) and what it must get
//! back (one reply per recipient, 250 only once the opt-out is stored, 451 when the store
//! failed, clear errors for protocol mistakes).
#![allow(clippy::unwrap_used)] // tests fail loudly

mod common;

use common::intake::{IntakeFixture, intake_fixture};
use optout_milter::{
    consent::ConsentValue,
    daemon::{self, Listeners},
};
use std::time::SystemTime;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// The `[intake]` keys of these tests.
const INTAKE: &str = r#"lmtp = "inet:127.0.0.1:0""#;

/// The intake, served over LMTP on a port of its own.
struct Server {
    port: u16,
    f: IntakeFixture,
}

async fn server() -> Server {
    let mut f = intake_fixture(INTAKE).await;
    let app = f.app.take().unwrap();
    let listeners = Listeners::bind(app.config()).await.unwrap();
    let port = listeners.lmtp_addr().unwrap().port();
    let (_reload, reloads) = tokio::sync::mpsc::channel(1);
    tokio::spawn(daemon::run(app, listeners, reloads, std::future::pending()));
    Server { port, f }
}

impl Server {
    async fn token(&self, address: &str, list: &str) -> String {
        self.f.token(address, list, SystemTime::now()).await
    }

    async fn value(&self, address: &str, scope: &str) -> Option<ConsentValue> {
        self.f.value(address, scope).await
    }

    async fn connect(&self) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let mut client = Client(BufReader::new(stream));
        assert!(client.reply().await[0].starts_with("220 "));
        client
    }
}

struct Client(BufReader<TcpStream>);

impl Client {
    async fn send(&mut self, text: &str) {
        self.0.get_mut().write_all(text.as_bytes()).await.unwrap();
    }

    /// One reply, all its lines.
    async fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(self.0.read_line(&mut line).await.unwrap() > 0, "closed");
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    async fn command(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await.remove(0)
    }
}

#[tokio::test]
async fn a_pipelined_transaction_unsubscribes_each_recipient_and_answers_each() {
    let server = server().await;
    let alice = server.token("alice@example.org", "weekly-news").await;
    let bob = server.token("bob@example.org", "*").await;
    let mut lmtp = server.connect().await;
    lmtp.send("LHLO mx.example.com\r\n").await;
    let capabilities = lmtp.reply().await;
    assert!(
        capabilities.contains(&"250-PIPELINING".to_owned()),
        "{capabilities:?}"
    );
    assert!(capabilities.contains(&"250-ENHANCEDSTATUSCODES".to_owned()));
    // Everything up to DATA in one write, as Postfix's LMTP client does.
    lmtp.send(&format!(
        "MAIL FROM:<reader@example.org> BODY=8BITMIME\r\n\
         RCPT TO:<unsubscribe+{alice}@example.com>\r\n\
         RCPT TO:<postmaster@example.com>\r\n\
         RCPT TO:<unsubscribe+{bob}@example.com>\r\n\
         DATA\r\n"
    ))
    .await;
    assert_eq!(lmtp.reply().await, ["250 2.1.0 sender ok"]);
    assert_eq!(lmtp.reply().await, ["250 2.1.5 recipient ok"]);
    assert_eq!(
        lmtp.reply().await,
        ["550 5.1.1 <postmaster@example.com> is not an unsubscribe or complaints address"]
    );
    assert_eq!(lmtp.reply().await, ["250 2.1.5 recipient ok"]);
    assert!(lmtp.reply().await[0].starts_with("354 "));
    lmtp.send(
        "From: Reader <reader@example.org>\r\nSubject: unsubscribe\r\n\
         Message-ID: <lmtp-1@example.org>\r\n\r\n..a dot-stuffed line\r\n.\r\n",
    )
    .await;
    // One reply per accepted recipient, in order, each after its opt-out is stored.
    let first = lmtp.reply().await.remove(0);
    assert!(
        first.starts_with(&format!("250 2.0.0 <unsubscribe+{alice}@example.com> alice@example.org unsubscribed from weekly-news")),
        "{first}"
    );
    let second = lmtp.reply().await.remove(0);
    assert!(
        second.starts_with("250 2.0.0 ") && second.contains("bob@example.org unsubscribed from *"),
        "{second}"
    );
    assert_eq!(
        server.value("alice@example.org", "weekly-news").await,
        Some(ConsentValue::No)
    );
    assert_eq!(
        server.value("bob@example.org", "*").await,
        Some(ConsentValue::No)
    );
    // The connection stays usable for the next mail, as an MTA's connection cache expects.
    assert_eq!(lmtp.command("RSET").await, "250 2.0.0 reset");
    assert_eq!(lmtp.command("QUIT").await, "221 2.0.0 bye");
}

#[tokio::test]
async fn mail_that_asks_for_nothing_is_accepted_and_records_nothing() {
    let server = server().await;
    let alice = server.token("alice@example.org", "weekly-news").await;
    let mut lmtp = server.connect().await;
    lmtp.send("LHLO mx.example.com\r\n").await;
    lmtp.reply().await;
    // A bounce (null sender) to a tokened address, and a forged token.
    for (sender, rcpt) in [
        ("", format!("unsubscribe+{alice}@example.com")),
        (
            "reader@example.org",
            "unsubscribe+aeaqaaaaaaaqijz75wniwlhq4dwqm6top4@example.com".to_owned(),
        ),
    ] {
        assert_eq!(
            lmtp.command(&format!("MAIL FROM:<{sender}>")).await,
            "250 2.1.0 sender ok"
        );
        assert_eq!(
            lmtp.command(&format!("RCPT TO:<{rcpt}>")).await,
            "250 2.1.5 recipient ok"
        );
        assert!(lmtp.command("DATA").await.starts_with("354 "));
        let reply = lmtp
            .command("From: x@example.org\r\nSubject: unsubscribe\r\n\r\nbody\r\n.")
            .await;
        assert!(
            reply.starts_with("250 2.0.0 ") && reply.contains("not an unsubscribe request"),
            "{reply}"
        );
    }
    assert_eq!(server.value("alice@example.org", "weekly-news").await, None);
}

#[tokio::test]
async fn a_failed_store_answers_451_so_the_mta_keeps_the_mail() {
    let server = server().await;
    let alice = server.token("alice@example.org", "weekly-news").await;
    server.f.break_store().await;
    let mut lmtp = server.connect().await;
    lmtp.command("LHLO mx.example.com").await;
    lmtp.command("MAIL FROM:<reader@example.org>").await;
    lmtp.command(&format!("RCPT TO:<unsubscribe+{alice}@example.com>"))
        .await;
    lmtp.command("DATA").await;
    let reply = lmtp
        .command("From: reader@example.org\r\nSubject: unsubscribe\r\n\r\n.")
        .await;
    assert!(reply.starts_with("451 4.3.0 "), "{reply}");
}

#[tokio::test]
async fn protocol_mistakes_get_clear_errors_and_the_session_goes_on() {
    let server = server().await;
    let mut lmtp = server.connect().await;
    assert_eq!(
        lmtp.command("EHLO mx.example.com").await,
        "500 5.5.1 this is LMTP: say LHLO"
    );
    assert_eq!(
        lmtp.command("MAIL FROM:<a@example.org>").await,
        "503 5.5.1 say LHLO first"
    );
    lmtp.command("LHLO mx.example.com").await;
    assert_eq!(
        lmtp.command("RCPT TO:<unsubscribe@example.com>").await,
        "503 5.5.1 MAIL first"
    );
    assert_eq!(
        lmtp.command("MAIL FROM:a@example.org").await,
        "501 5.5.4 syntax: MAIL FROM:<address>"
    );
    assert_eq!(
        lmtp.command("MAIL FROM:<a@example.org>").await,
        "250 2.1.0 sender ok"
    );
    assert_eq!(lmtp.command("DATA").await, "503 5.5.1 MAIL and RCPT first");
    assert_eq!(
        lmtp.command(&format!("NOOP {}", "x".repeat(5000))).await,
        "500 5.5.2 line too long"
    );
    assert_eq!(
        lmtp.command("STARTTLS").await,
        "500 5.5.2 command not recognized"
    );
    // The transaction survived the mistakes; a message that is not mail is refused.
    assert_eq!(
        lmtp.command("RCPT TO:<unsubscribe@example.com>").await,
        "250 2.1.5 recipient ok"
    );
    assert!(lmtp.command("DATA").await.starts_with("354 "));
    let reply = lmtp.command("\r\nno header at all\r\n.").await;
    assert!(
        reply.starts_with("554 5.6.0 <unsubscribe@example.com> "),
        "{reply}"
    );
    assert_eq!(lmtp.command("QUIT").await, "221 2.0.0 bye");
}
