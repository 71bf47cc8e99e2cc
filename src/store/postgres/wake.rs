//! Waking the followers: a connection that `LISTEN`s for the notification each commit that
//! changed consent sends (a trigger on `consent_history`), and turns it into the change
//! token the consent index compares before it answers.
//!
//! A notification only says "read the feed"; a lost one costs latency, never a change (the
//! index also reads the feed every [`crate::store::index::SYNC_INTERVAL`]). While the
//! listening connection is down, notifications may be lost, so the token changes at every
//! call: every lookup then reads the feed first, which fails while the database is away,
//! and the milter answers with a temporary failure rather than from a copy that may be
//! stale. Once listening again, the token moves once more, so the first lookup catches up.

use sqlx::postgres::{PgListener, PgPool};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// The channel the trigger notifies.
pub const CHANNEL: &str = "optout_consent";
/// The pause before listening again after the connection was lost.
const RETRY: Duration = Duration::from_millis(500);

/// The change token, shared with the listening task.
#[derive(Debug)]
pub struct Wake {
    count: AtomicU64,
    listening: AtomicBool,
    /// Dropped with the store: ends the listening task and closes its connection.
    _stop: oneshot::Sender<()>,
}

impl Wake {
    /// Starts listening on a connection of `pool`'s database, until the returned handle
    /// is dropped.
    pub fn start(pool: &PgPool) -> Arc<Self> {
        let (stop, stopped) = oneshot::channel();
        let wake = Arc::new(Self {
            count: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            _stop: stop,
        });
        let task = listen(pool.clone(), Arc::downgrade(&wake));
        tokio::spawn(async move {
            tokio::select! {
                () = task => {}
                _ = stopped => {}
            }
        });
        wake
    }

    /// A value that changes whenever some process committed a change, and at every call
    /// while that cannot be known.
    pub fn token(&self) -> u64 {
        match self.listening.load(Ordering::Acquire) {
            true => self.count.load(Ordering::Acquire),
            false => self.count.fetch_add(1, Ordering::AcqRel),
        }
    }

    fn bump(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }
}

async fn listen(pool: PgPool, wake: std::sync::Weak<Wake>) {
    let mut failing = false;
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listener {
            Ok(listener) => listener,
            Err(error) => {
                if !failing {
                    warn!(error = %crate::error_chain(&error), "cannot listen for other nodes' changes; every lookup reads the feed first");
                    failing = true;
                }
                if wake.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let Some(strong) = wake.upgrade() else {
            return;
        };
        strong.listening.store(true, Ordering::Release);
        strong.bump();
        drop(strong);
        if failing {
            info!("listening for other nodes' changes again");
        }
        // `try_recv` returns `None` when the connection was lost.
        while let Ok(Some(_)) = listener.try_recv().await {
            let Some(strong) = wake.upgrade() else {
                return;
            };
            strong.bump();
        }
        let Some(strong) = wake.upgrade() else {
            return;
        };
        strong.listening.store(false, Ordering::Release);
        drop(strong);
        warn!(
            "the connection listening for other nodes' changes was lost; every lookup reads the feed first"
        );
        failing = true;
        tokio::time::sleep(RETRY).await;
    }
}
