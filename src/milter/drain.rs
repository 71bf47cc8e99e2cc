//! Letting milter transactions in flight finish at shutdown.
//!
//! indymilter, told to shut down, ends every session at its next command, so a message
//! between MAIL and end of message would be cut off and the MTA would have to retry it.
//! Instead, at shutdown the listener stops accepting ([`Closing`]) and the milter waits
//! until no connection is inside a transaction ([`Activity`]), or [`DRAIN`] has passed;
//! only then are the sessions ended, between messages.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::Notify;
use tracing::{info, warn};

/// The longest shutdown waits for transactions in flight. Postfix waits
/// `milter_command_timeout` (30 s by default) for any one reply.
pub const DRAIN: Duration = Duration::from_secs(20);

/// How many connections are inside a transaction (after MAIL, before its end).
#[derive(Debug, Default)]
pub struct Activity {
    busy: AtomicUsize,
    idle: Notify,
}

impl Activity {
    pub fn begin(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
    }

    pub fn end(&self) {
        if self.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Waits until no transaction is in flight, for at most [`DRAIN`].
    pub async fn drained(&self) {
        let busy = self.busy.load(Ordering::Acquire);
        if busy > 0 {
            info!(
                transactions = busy,
                "milter: letting transactions in flight finish"
            );
        }
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.busy.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(DRAIN, wait).await.is_err() {
            warn!(
                transactions = self.busy.load(Ordering::Acquire),
                "milter: transactions still in flight after the drain time are cut off; the MTA retries them"
            );
        }
    }
}

/// Set once shutdown begins: the listener accepts nothing more.
#[derive(Clone, Debug, Default)]
pub struct Closing(Arc<AtomicBool>);

impl Closing {
    pub fn close(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
