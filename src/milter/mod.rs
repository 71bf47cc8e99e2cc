//! The milter: the MTA's view of optout-milter.
//!
//! [`listener`] binds the socket, [`callbacks`] adapts indymilter's callbacks to
//! [`session`], which holds the per-connection state and makes every decision through the
//! consent domain and the store. Nothing outside this module knows the milter protocol.

pub mod callbacks;
pub mod listener;
pub mod session;

use crate::{config::Config, intake::Intake, store::ConsentStore, unsubscribe::Unsubscribe};
use std::{future::Future, io, sync::Arc};

pub use listener::{MilterListener, bind};

/// What every milter connection shares: the validated config, the store, and the token
/// codec when unsubscribe headers are configured.
pub struct Milter {
    pub config: Arc<Config>,
    pub store: Arc<dyn ConsentStore>,
    pub unsubscribe: Option<Arc<Unsubscribe>>,
    /// Set when the milter takes unsubscribe mails itself (`[intake] milter = true`).
    pub intake: Option<Arc<Intake>>,
}

impl Milter {
    /// Assembles the milter; it takes unsubscribe mails itself when `[intake] milter` says so.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn ConsentStore>,
        unsubscribe: Option<Arc<Unsubscribe>>,
    ) -> Self {
        let intake = match (&config.intake, &unsubscribe) {
            (Some(intake), Some(unsubscribe)) if intake.milter => Some(Arc::new(Intake::new(
                intake.clone(),
                store.clone(),
                unsubscribe.clone(),
                config.addresses.clone(),
            ))),
            _ => None,
        };
        Self {
            config,
            store,
            unsubscribe,
            intake,
        }
    }
}

/// Serves milter connections on `listener` until `shutdown` resolves, then waits for the
/// open sessions to end.
pub async fn run(
    listener: MilterListener,
    milter: Arc<Milter>,
    shutdown: impl Future,
) -> io::Result<()> {
    let config = indymilter::Config {
        max_connections: milter.config.milter.max_connections,
        ..Default::default()
    };
    indymilter::run(listener, callbacks::build(milter), config, shutdown).await
}
