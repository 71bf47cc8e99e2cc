//! One LMTP connection: the commands of RFC 2033 (LHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT,
//! VRFY), pipelining, and one reply per accepted recipient after the data.
//!
//! Replies are buffered and sent when the client has nothing more in flight, so a client
//! that pipelines MAIL, RCPT and DATA gets their replies in one write.

use crate::intake::{Envelope, Intake, Outcome};
use std::{io, time::Duration};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tracing::warn;

/// What a connection must be.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Longest command line kept (RFC 5321 allows 512 octets; extensions make them longer).
const MAX_COMMAND: usize = 4096;
/// Most recipients of one transaction.
const MAX_RECIPIENTS: usize = 100;
/// How long to wait for the first command. An MTA sends LHLO as soon as it reads the
/// greeting; a client that says nothing only holds one of the connection slots.
const FIRST_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a later command. RFC 5321 (4.5.3.2) asks 5 minutes of an SMTP
/// server, but the LMTP client here is an MTA on the same host that writes each command
/// at once and closes cached connections after seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const DATA_TIMEOUT: Duration = Duration::from_secs(180);

/// The mail transaction in progress.
struct Transaction {
    sender: String,
    recipients: Vec<String>,
}

/// A command line, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Lhlo,
    Helo,
    Mail(String),
    Rcpt(String),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    /// A known command with a malformed argument: the reply says what was expected.
    Syntax(&'static str),
    Unknown,
}

/// Serves one connection until QUIT, end of input, a timeout or an I/O error.
pub async fn serve(stream: Box<dyn Io>, intake: &Intake) -> io::Result<()> {
    let mut io = BufReader::new(BufWriter::new(stream));
    io.write_all(b"220 optout-milter LMTP ready\r\n").await?;
    io.flush().await?;
    let mut greeted = false;
    let mut transaction: Option<Transaction> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let wait = if greeted {
            COMMAND_TIMEOUT
        } else {
            FIRST_COMMAND_TIMEOUT
        };
        let read = tokio::time::timeout(wait, read_line(&mut io, &mut line, MAX_COMMAND));
        let Ok(read) = read.await else {
            io.write_all(b"421 4.4.2 timeout waiting for a command\r\n")
                .await?;
            return io.flush().await;
        };
        match read? {
            Line::End => return Ok(()),
            Line::Truncated => {
                io.write_all(b"500 5.5.2 line too long\r\n").await?;
                io.flush().await?;
                continue;
            }
            Line::Complete => {}
        }
        let reply: String = match parse(&line) {
            Command::Lhlo => {
                greeted = true;
                transaction = None;
                "250-optout-milter\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n\
                 250-8BITMIME\r\n250 SMTPUTF8"
                    .into()
            }
            Command::Helo => "500 5.5.1 this is LMTP: say LHLO".into(),
            Command::Mail(_) if !greeted => "503 5.5.1 say LHLO first".into(),
            Command::Mail(_) if transaction.is_some() => "503 5.5.1 MAIL already given".into(),
            Command::Mail(sender) => {
                transaction = Some(Transaction {
                    sender,
                    recipients: Vec::new(),
                });
                "250 2.1.0 sender ok".into()
            }
            Command::Rcpt(rcpt) => match transaction.as_mut() {
                None => "503 5.5.1 MAIL first".into(),
                Some(t) if t.recipients.len() >= MAX_RECIPIENTS => {
                    "452 4.5.3 too many recipients".into()
                }
                Some(_) if !intake.is_intake_address(&rcpt) => {
                    format!(
                        "550 5.1.1 <{}> is not an unsubscribe or complaints address",
                        printable(&rcpt)
                    )
                }
                Some(t) => {
                    t.recipients.push(rcpt);
                    "250 2.1.5 recipient ok".into()
                }
            },
            Command::Data => match transaction.take() {
                Some(t) if !t.recipients.is_empty() => {
                    io.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    io.flush().await?;
                    let message = read_data(&mut io, intake.config.max_bytes).await?;
                    deliver(intake, &t, &message).await
                }
                kept => {
                    transaction = kept;
                    "503 5.5.1 MAIL and RCPT first".into()
                }
            },
            Command::Rset => {
                transaction = None;
                "250 2.0.0 reset".into()
            }
            Command::Noop => "250 2.0.0 ok".into(),
            Command::Vrfy => "252 2.5.0 cannot verify".into(),
            Command::Quit => {
                io.write_all(b"221 2.0.0 bye\r\n").await?;
                return io.flush().await;
            }
            Command::Syntax(usage) => format!("501 5.5.4 syntax: {usage}"),
            Command::Unknown => "500 5.5.2 command not recognized".into(),
        };
        io.write_all(reply.as_bytes()).await?;
        io.write_all(b"\r\n").await?;
        if io.buffer().is_empty() {
            io.flush().await?;
        }
    }
}

/// Processes the mail once per recipient (each may carry its own token) and gives each its
/// reply, as LMTP requires: 250 once the opt-out is on disk (or the mail asked for
/// nothing), 451 when the store failed, 554 when the message is not mail.
async fn deliver(intake: &Intake, t: &Transaction, message: &[u8]) -> String {
    let mut replies = Vec::with_capacity(t.recipients.len());
    for rcpt in &t.recipients {
        let envelope = Envelope {
            sender: Some(t.sender.clone()),
            recipients: vec![rcpt.clone()],
        };
        let rcpt = printable(rcpt);
        replies.push(match intake.process(&envelope, message).await {
            Ok(Outcome::Unsubscribed(done)) => {
                let done: Vec<String> = done
                    .iter()
                    .map(|u| format!("{} unsubscribed from {}", u.address, u.scope))
                    .collect();
                format!("250 2.0.0 <{rcpt}> {}", done.join(", "))
            }
            Ok(Outcome::Complained(u)) => format!(
                "250 2.0.0 <{rcpt}> complaint: {} unsubscribed from {}",
                u.address, u.scope
            ),
            Ok(Outcome::ConfirmationRequested(address)) => {
                format!("250 2.0.0 <{rcpt}> a link to confirm was sent to {address}")
            }
            Ok(Outcome::Ignored(reason)) => format!(
                "250 2.0.0 <{rcpt}> not an unsubscribe request: {}",
                printable(&reason)
            ),
            Err(error) if error.is_temporary() => {
                warn!(error = %crate::error_chain(&error), "cannot act on an unsubscribe mail; the MTA will retry");
                format!("451 4.3.0 <{rcpt}> cannot act on this now; try again later")
            }
            Err(_) => format!("554 5.6.0 <{rcpt}> the message cannot be parsed as mail"),
        });
    }
    replies.join("\r\n")
}

/// `text` fit for one reply line: printable ASCII, at most 200 characters.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect()
}

pub fn parse(line: &[u8]) -> Command {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    match verb.to_ascii_uppercase().as_str() {
        "LHLO" if rest.trim().is_empty() => Command::Syntax("LHLO domain"),
        "LHLO" => Command::Lhlo,
        "HELO" | "EHLO" => Command::Helo,
        "MAIL" => path(rest, "FROM:").map_or(Command::Syntax("MAIL FROM:<address>"), Command::Mail),
        "RCPT" => path(rest, "TO:").map_or(Command::Syntax("RCPT TO:<address>"), Command::Rcpt),
        "DATA" => Command::Data,
        "RSET" => Command::Rset,
        "NOOP" => Command::Noop,
        "QUIT" => Command::Quit,
        "VRFY" => Command::Vrfy,
        _ => Command::Unknown,
    }
}

/// The address of `FROM:<address> PARAMS` (or `TO:`), without a source route.
fn path(rest: &str, keyword: &str) -> Option<String> {
    let rest = rest.trim_start();
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let inner = rest[keyword.len()..].trim_start().strip_prefix('<')?;
    let address = &inner[..inner.find('>')?];
    let address = match address.strip_prefix('@') {
        Some(routed) => routed.split_once(':')?.1,
        None => address,
    };
    Some(address.to_owned())
}

/// How a line read ended.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line, with its end of line, is in the buffer.
    Complete,
    /// The line was longer than allowed: what fit is in the buffer, the rest was read and
    /// dropped.
    Truncated,
    /// The input ended before a line began.
    End,
}

/// Reads one line into `buf`, keeping at most `max` bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Line> {
    let mut truncated = false;
    let mut any = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return if !any {
                Ok(Line::End)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let room = max.saturating_sub(buf.len());
        truncated |= chunk.len() > room;
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        input.consume(used);
        if done {
            return Ok(if truncated {
                Line::Truncated
            } else {
                Line::Complete
            });
        }
    }
}

/// Reads the data up to the lone dot, undoing dot-stuffing, keeping at most `max + 1`
/// bytes (enough for the intake to know the mail is too large) and draining the rest.
async fn read_data<R: AsyncBufRead + Unpin>(input: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut message = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::time::timeout(DATA_TIMEOUT, read_line(input, &mut line, max + 1))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timeout in the data"))?;
        if read? == Line::End {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(message);
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        let room = (max + 1).saturating_sub(message.len());
        message.extend_from_slice(&unstuffed[..unstuffed.len().min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_parsed_as_rfc_5321_writes_them() {
        assert_eq!(parse(b"LHLO mx.example\r\n"), Command::Lhlo);
        assert_eq!(parse(b"lhlo\r\n"), Command::Syntax("LHLO domain"));
        assert_eq!(parse(b"EHLO mx.example\r\n"), Command::Helo);
        assert_eq!(
            parse(b"MAIL FROM:<a@example.org> BODY=8BITMIME SIZE=100\r\n"),
            Command::Mail("a@example.org".into())
        );
        assert_eq!(parse(b"mail from: <>\r\n"), Command::Mail(String::new()));
        assert_eq!(
            parse(b"RCPT TO:<@relay.example:u+tok@example.com>\r\n"),
            Command::Rcpt("u+tok@example.com".into())
        );
        assert_eq!(
            parse(b"RCPT TO:u@example.com\r\n"),
            Command::Syntax("RCPT TO:<address>")
        );
        assert_eq!(parse(b"MAIL\r\n"), Command::Syntax("MAIL FROM:<address>"));
        assert_eq!(parse(b"DATA\n"), Command::Data);
        assert_eq!(parse(b"STARTTLS\r\n"), Command::Unknown);
    }

    #[tokio::test]
    async fn lines_longer_than_allowed_are_cut_and_drained() {
        let mut input: &[u8] = b"0123456789\r\nnext\r\n";
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut input, &mut buf, 4).await.unwrap(),
            Line::Truncated
        );
        assert_eq!(buf, b"0123");
        buf.clear();
        assert_eq!(
            read_line(&mut input, &mut buf, 4096).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"next\r\n");
        buf.clear();
        assert_eq!(
            read_line(&mut input, &mut buf, 4096).await.unwrap(),
            Line::End
        );
    }

    #[tokio::test]
    async fn data_is_unstuffed_capped_and_must_end_with_a_dot() {
        let mut input: &[u8] = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
        assert_eq!(
            read_data(&mut input, 1024).await.unwrap(),
            b"Subject: x\r\n\r\n.leading dot\r\n"
        );
        let mut input: &[u8] = b"0123456789\r\n0123456789\r\n.\r\n";
        assert_eq!(read_data(&mut input, 5).await.unwrap().len(), 6);
        let mut input: &[u8] = b"Subject: x\r\n\r\ncut off";
        assert!(read_data(&mut input, 1024).await.is_err());
    }
}
