//! Refused unsubscribe links, summarised in the log.
//!
//! A flood of forged tokens would otherwise write a log line per request (550 MB a minute
//! at 60 000 requests a second). The first refusal of each minute is logged in full, so a
//! broken link generator still shows its reason; the rest are counted, and the count is
//! logged once the minute is over.

use std::{
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};
use tracing::info;

const WINDOW: Duration = Duration::from_secs(60);

/// The refusals of the current minute.
pub struct Refusals {
    window: Mutex<Window>,
}

struct Window {
    start: Instant,
    count: u64,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            window: Mutex::new(Window {
                start: Instant::now(),
                count: 0,
            }),
        }
    }
}

impl Refusals {
    /// Notes one refused link from `client` for `reason`.
    pub fn note(&self, client: IpAddr, reason: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(window.start) >= WINDOW {
            if window.count > 1 {
                info!(
                    refused = window.count,
                    seconds = now.duration_since(window.start).as_secs(),
                    "unsubscribe links refused (forged, damaged or unknown)"
                );
            }
            *window = Window {
                start: now,
                count: 0,
            };
        }
        window.count += 1;
        if window.count == 1 {
            info!(%client, %reason, "refused an unsubscribe link; more refusals this minute are counted, not logged");
        }
    }
}
