//! indymilter callbacks: each one unpacks the protocol values, calls [`Session`], and turns
//! the outcome into a milter reply. No decision is made here.
//!
//! Each connection takes a snapshot of the shared [`Milter`] (config, keys, intake) when it
//! begins and keeps it to the end: a reload swaps the shared one, and a message never sees
//! two configurations.
//!
//! Negotiation asks for the least the milter needs: the stages it reads (connect, MAIL,
//! RCPT, headers, end of message; no HELO, DATA, end of headers or body), the actions it
//! uses (delete recipient, change header, add header) and no reply at the stages that
//! never refuse anything, which saves the MTA a round trip each.

use super::{
    Milter, SharedMilter,
    drain::Activity,
    session::{EomPlan, EomVerdict, RcptVerdict, Session},
};
use indymilter::{
    ActionError, Actions, Callbacks, Context, ContextActions, EomActions, EomContext, MacroStage,
    NegotiateContext, ProtoOpts, SetErrorReply, SocketInfo, Status,
};
use std::{
    collections::HashMap,
    ffi::{CStr, CString},
    sync::Arc,
};
use tracing::{Span, error, info_span, warn};

/// Per-connection data: the settings it began with, the session, and the replies the MTA
/// agreed to do without.
pub struct Connection {
    milter: Arc<Milter>,
    /// Every log line of a transaction carries it: the client and the queue id. Made when
    /// the queue id is first known (at RCPT), with both fields at once: recording a field
    /// into a span afterwards formats it again, which cost more than the rest of the span.
    span: Span,
    /// Who connected, for the span.
    client: String,
    session: Session,
    /// Inside a transaction (counted in `activity`, so shutdown waits for its end).
    busy: bool,
    activity: Arc<Activity>,
    /// Counted in the open-connections gauge while it lives.
    _open: crate::metrics::OpenConnection,
    /// The queue id of the span: Postfix repeats it at every RCPT and at the end.
    queue_id: String,
    noreply: ProtoOpts,
    /// The MTA accepts `Skip` for the rest of the body.
    skip: bool,
}

/// The actions the milter uses.
pub const ACTIONS: Actions = Actions::ADD_HEADER
    .union(Actions::CHANGE_HEADER)
    .union(Actions::DELETE_RCPT);

/// Stages whose callback never says anything but "continue".
const NOREPLY: ProtoOpts = ProtoOpts::NOREPLY_CONNECT
    .union(ProtoOpts::NOREPLY_MAIL)
    .union(ProtoOpts::NOREPLY_HEADER);

/// Builds the callbacks over the shared, reloadable state.
pub fn build(shared: Arc<SharedMilter>, activity: Arc<Activity>) -> Callbacks<Connection> {
    // Whether the body is ever read is negotiated per connection, but the callback must be
    // registered at start: `[intake] milter` needs a restart.
    let takes_mail = shared.load().intake.is_some();
    let (s1, s2) = (shared.clone(), shared);
    let a1 = activity.clone();
    let callbacks = Callbacks::new()
        .on_negotiate(move |cx, actions, opts| {
            let conn = Connection::new(s1.load_full(), a1.clone());
            Box::pin(negotiate(cx, conn, actions, opts))
        })
        .on_connect(move |cx, _, socket| {
            // Negotiation made the connection; only an MTA that skipped it needs one here.
            if cx.data.is_none() {
                cx.data = Some(Connection::new(s2.load_full(), activity.clone()));
            }
            Box::pin(async move { connect(cx, socket) })
        })
        .on_mail(|cx, args| Box::pin(async move { mail(cx, args) }))
        .on_rcpt(|cx, args| Box::pin(rcpt(cx, args)))
        .on_header(|cx, name, value| Box::pin(async move { header(cx, &name, &value) }))
        .on_eom(|cx| Box::pin(eom(cx)))
        .on_abort(|cx| {
            Box::pin(async move {
                if let Some(conn) = &mut cx.data {
                    conn.session.abort();
                    conn.done();
                }
                Status::Continue
            })
        })
        .on_close(|cx| {
            Box::pin(async move {
                if let Some(conn) = &mut cx.data {
                    conn.done();
                }
                Status::Continue
            })
        });
    // The body is read only for unsubscribe mails; without intake it is never requested.
    match takes_mail {
        true => callbacks.on_body(|cx, chunk| Box::pin(async move { body(cx, &chunk) })),
        false => callbacks,
    }
}

impl Connection {
    fn new(milter: Arc<Milter>, activity: Arc<Activity>) -> Self {
        Self {
            milter,
            span: Span::none(),
            client: String::new(),
            session: Session::default(),
            busy: false,
            activity,
            _open: crate::metrics::OpenConnection::milter(),
            queue_id: String::new(),
            noreply: ProtoOpts::empty(),
            skip: false,
        }
    }

    /// Makes the span for the transaction with `queue_id` when the queue id is new.
    fn open_span(&mut self, queue_id: &str) {
        if self.queue_id != queue_id || self.span.is_none() {
            self.queue_id.clear();
            self.queue_id.push_str(queue_id);
            self.span = info_span!("milter", client = self.client.as_str(), queue_id);
        }
    }

    /// A transaction begins (MAIL).
    fn begin(&mut self) {
        if !self.busy {
            self.busy = true;
            self.activity.begin();
        }
    }

    /// The transaction ended (end of message, abort, close).
    fn done(&mut self) {
        if self.busy {
            self.busy = false;
            self.activity.end();
        }
    }
}

async fn negotiate(
    cx: &mut NegotiateContext<Connection>,
    mut conn: Connection,
    mta_actions: Actions,
    mta_opts: ProtoOpts,
) -> Status {
    if !mta_actions.contains(ACTIONS) {
        error!(offered = ?mta_actions, needed = ?ACTIONS, "the MTA does not offer the milter actions needed");
        return Status::Reject;
    }
    cx.requested_actions = ACTIONS;
    let noreply = mta_opts & NOREPLY;
    cx.requested_opts |= noreply;
    let queue_id = CString::from(c"i");
    cx.requested_macros = HashMap::from([
        (MacroStage::Rcpt, queue_id.clone()),
        (MacroStage::Eom, queue_id),
    ]);
    conn.noreply = noreply;
    conn.skip = cx.requested_opts.contains(ProtoOpts::SKIP);
    cx.data = Some(conn);
    Status::Continue
}

fn connect(cx: &mut Context<Connection>, socket: SocketInfo) -> Status {
    let Some(conn) = &mut cx.data else {
        return Status::Tempfail;
    };
    // Formatted once here rather than at each transaction's span: through the span's
    // field formatter, an address cost more than the rest of the span.
    conn.client = match &socket {
        SocketInfo::Inet(addr) => client_address(addr.ip()),
        SocketInfo::Unix(path) => path.to_string_lossy().into_owned(),
        SocketInfo::Unknown => "local".to_owned(),
    };
    // Postfix gives local submissions client port 0; Sendmail gives no socket at all.
    conn.session.local_submission = match socket {
        SocketInfo::Inet(addr) => addr.port() == 0,
        SocketInfo::Unix(_) => false,
        SocketInfo::Unknown => true,
    };
    reply_or_continue(conn, ProtoOpts::NOREPLY_CONNECT)
}

fn mail(cx: &mut Context<Connection>, args: Vec<CString>) -> Status {
    let Some(conn) = &mut cx.data else {
        return Status::Tempfail;
    };
    let sender = args
        .first()
        .map(|a| a.to_string_lossy())
        .unwrap_or_default();
    conn.begin();
    conn.session.mail(&conn.milter, &sender);
    reply_or_continue(conn, ProtoOpts::NOREPLY_MAIL)
}

async fn rcpt(cx: &mut Context<Connection>, args: Vec<CString>) -> Status {
    let Some(conn) = &mut cx.data else {
        return Status::Tempfail;
    };
    conn.open_span(&queue_id(&cx.macros));
    let rcpt = args
        .first()
        .map(|a| a.to_string_lossy())
        .unwrap_or_default();
    let Connection {
        span,
        session,
        milter,
        ..
    } = conn;
    match InSpan::new(span, session.rcpt(milter, &rcpt)).await {
        RcptVerdict::Continue => Status::Continue,
        RcptVerdict::Refuse { xcode, text } => {
            set_reply(&mut cx.reply, "550", xcode, &text, Status::Reject)
        }
        RcptVerdict::Tempfail => tempfail(&mut cx.reply),
    }
}

fn header(cx: &mut Context<Connection>, name: &CStr, value: &CStr) -> Status {
    let Some(conn) = &mut cx.data else {
        return Status::Tempfail;
    };
    conn.session.header(
        &conn.milter,
        &name.to_string_lossy(),
        &value.to_string_lossy(),
    );
    reply_or_continue(conn, ProtoOpts::NOREPLY_HEADER)
}

fn body(cx: &mut Context<Connection>, chunk: &[u8]) -> Status {
    let Some(conn) = &mut cx.data else {
        return Status::Tempfail;
    };
    match conn.session.body(&conn.milter, chunk) || !conn.skip {
        true => Status::Continue,
        false => Status::Skip,
    }
}

async fn eom(cx: &mut EomContext<Connection>) -> Status {
    let Some(conn) = &mut cx.data else {
        return Status::Tempfail;
    };
    conn.open_span(&queue_id(&cx.macros));
    let Connection {
        span,
        session,
        milter,
        ..
    } = conn;
    let plan = InSpan::new(span, session.eom(milter)).await;
    conn.done();
    // The header changes are outside the span (each is a poll, and each poll in a span
    // enters and leaves it): their one log line names the span itself.
    if let Err(e) = apply(&cx.actions, &plan).await {
        error!(parent: &conn.span, error = %crate::error_chain(&e), "cannot change the message");
        return tempfail(&mut cx.reply);
    }
    match plan.verdict {
        EomVerdict::Continue => Status::Continue,
        EomVerdict::Reject { xcode, text } => {
            set_reply(&mut cx.reply, "550", xcode, &text, Status::Reject)
        }
        EomVerdict::Discard => Status::Discard,
        EomVerdict::Tempfail => tempfail(&mut cx.reply),
    }
}

/// Carries out the plan's changes on the message.
async fn apply(actions: &EomActions, plan: &EomPlan) -> Result<(), ActionError> {
    for (name, count) in &plan.delete_headers {
        // From the last copy down, so the indexes of the others stay valid.
        for index in (1..=*count).rev() {
            actions
                .change_header(name.as_str(), index, None::<CString>)
                .await?;
        }
    }
    for rcpt in &plan.remove {
        actions.delete_recipient(rcpt.as_str()).await?;
    }
    for (name, value) in &plan.add_headers {
        actions.add_header(*name, value.as_str()).await?;
    }
    Ok(())
}

pin_project_lite::pin_project! {
    /// A future run inside a span it borrows, entered at each poll like `Instrument`
    /// does, without cloning and closing a span handle at every callback: in a milter
    /// transaction, that was a fifth of the span's cost.
    struct InSpan<'a, F> {
        span: &'a Span,
        #[pin]
        future: F,
    }
}

impl<'a, F> InSpan<'a, F> {
    fn new(span: &'a Span, future: F) -> Self {
        Self { span, future }
    }
}

impl<F: std::future::Future> std::future::Future for InSpan<'_, F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        this.future.poll(cx)
    }
}

/// An IPv4 address written out directly: through `Display`, it cost more than the
/// rest of the span (1 650 instructions, `benches/instructions/run.sh`).
fn client_address(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
            text
        }
        std::net::IpAddr::V6(_) => ip.to_string(),
    }
}

fn reply_or_continue(conn: &Connection, stage: ProtoOpts) -> Status {
    match conn.noreply.contains(stage) {
        true => Status::Noreply,
        false => Status::Continue,
    }
}

fn queue_id(macros: &indymilter::Macros) -> String {
    macros.get(c"i").map_or_else(
        || "NOQUEUE".to_owned(),
        |id| id.to_string_lossy().into_owned(),
    )
}

fn tempfail(reply: &mut impl SetErrorReply) -> Status {
    set_reply(
        reply,
        "451",
        "4.3.0",
        "opt-out status cannot be checked now, try again later",
        Status::Tempfail,
    )
}

fn set_reply(
    reply: &mut impl SetErrorReply,
    code: &str,
    xcode: &str,
    text: &str,
    status: Status,
) -> Status {
    // A text that the protocol cannot carry (a stray NUL or %) still gets the status.
    if let Err(e) = reply.set_error_reply(code, Some(xcode), [text.replace('%', "%%")]) {
        warn!(error = %crate::error_chain(&e), text, "cannot set the SMTP reply text");
    }
    status
}

#[cfg(test)]
mod tests {
    use super::client_address;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn client_addresses_read_as_display_writes_them() {
        let mut addresses: Vec<IpAddr> = [0u8, 1, 9, 10, 99, 100, 199, 200, 255]
            .into_iter()
            .map(|o| IpAddr::V4(Ipv4Addr::new(o, 255 - o, o / 3, 7)))
            .collect();
        addresses.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
        addresses.push("2001:db8::25".parse().unwrap());
        for ip in addresses {
            assert_eq!(client_address(ip), ip.to_string());
        }
    }
}
