//! What a reload (SIGHUP) may change, and what it reports.
//!
//! Rules, lists, the consent default, the store timeout and failure policy, token keys,
//! pages, rate limits, intake settings and the admin API's tokens take effect on the next
//! connection or request.
//! What is bound or opened at start (sockets and listen addresses, their limits and
//! permissions, TLS files, the store) keeps its running value until a restart, and the
//! reload says so: a reload must never leave the daemon half-changed.

use super::Config;

/// What differs between the running configuration and the one read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Sections whose new values are now in force.
    pub applied: Vec<&'static str>,
    /// Keys that differ but need a restart; the running values stay.
    pub need_restart: Vec<&'static str>,
}

/// `new` with every setting that needs a restart put back to `old`'s, and what differs.
pub fn reconcile(old: &Config, mut new: Config) -> (Config, Changes) {
    let mut changes = Changes::default();
    let mut restart = |key: &'static str, differs: bool| {
        if differs {
            changes.need_restart.push(key);
        }
    };
    restart("milter.socket", old.milter.socket != new.milter.socket);
    restart(
        "milter.max_connections",
        old.milter.max_connections != new.milter.max_connections,
    );
    restart(
        "milter.socket_mode / socket_group",
        old.milter.socket_permissions != new.milter.socket_permissions,
    );
    restart(
        "milter.idle_timeout",
        old.milter.idle_timeout != new.milter.idle_timeout,
    );
    new.milter.idle_timeout = old.milter.idle_timeout;
    new.milter.socket = old.milter.socket.clone();
    new.milter.max_connections = old.milter.max_connections;
    new.milter.socket_permissions = old.milter.socket_permissions;

    restart("store.url", old.store_url != new.store_url);
    new.store_url = old.store_url.clone();
    restart("metrics.listen", old.metrics != new.metrics);
    new.metrics = old.metrics;
    restart("[[webhooks]]", old.webhooks != new.webhooks);
    new.webhooks = old.webhooks.clone();
    // A new erasure key would lift every erasure at once: only ever at a restart.
    restart("consent.erasure_key", old.erasure_key != new.erasure_key);
    new.erasure_key = old.erasure_key.clone();

    // Whole sections that appear or vanish change which servers run.
    for (key, differs) in [
        (
            "[unsubscribe]",
            old.unsubscribe.is_some() != new.unsubscribe.is_some(),
        ),
        ("[web]", old.web.is_some() != new.web.is_some()),
        ("[intake]", old.intake.is_some() != new.intake.is_some()),
        ("[api]", old.api.is_some() != new.api.is_some()),
    ] {
        restart(key, differs);
    }
    if old.api.is_some() != new.api.is_some() {
        new.api = old.api.clone();
    }
    if let (Some(o), Some(n)) = (&old.api, &mut new.api) {
        restart("api.listen", o.listen != n.listen);
        restart("api.tls_cert / tls_key", o.tls != n.tls);
        restart(
            "api.max_connections",
            o.max_connections != n.max_connections,
        );
        restart(
            "api.max_import_bytes",
            o.max_import_bytes != n.max_import_bytes,
        );
        n.listen = o.listen;
        n.tls = o.tls.clone();
        n.max_connections = o.max_connections;
        n.max_import_bytes = o.max_import_bytes;
    }
    if old.unsubscribe.is_some() != new.unsubscribe.is_some() {
        new.unsubscribe = old.unsubscribe.clone();
    }
    if old.web.is_some() != new.web.is_some() {
        new.web = old.web.clone();
    }
    if old.intake.is_some() != new.intake.is_some() {
        new.intake = old.intake.clone();
    }
    if let (Some(o), Some(n)) = (&old.web, &mut new.web) {
        restart("web.listen", o.listen != n.listen);
        restart("web.tls_cert / tls_key", o.tls != n.tls);
        restart(
            "web.max_connections",
            o.max_connections != n.max_connections,
        );
        n.listen = o.listen;
        n.tls = o.tls.clone();
        n.max_connections = o.max_connections;
    }
    if let (Some(o), Some(n)) = (&old.intake, &mut new.intake) {
        restart("intake.lmtp", o.lmtp != n.lmtp);
        restart("intake.milter", o.milter != n.milter);
        restart(
            "intake.max_connections",
            o.max_connections != n.max_connections,
        );
        restart(
            "intake.lmtp_socket_mode / lmtp_socket_group",
            o.lmtp_permissions != n.lmtp_permissions,
        );
        n.lmtp = o.lmtp.clone();
        n.milter = o.milter;
        n.max_connections = o.max_connections;
        n.lmtp_permissions = o.lmtp_permissions;
    }

    for (section, differs) in [
        (
            "[milter]",
            format!("{:?}", old.milter) != format!("{:?}", new.milter),
        ),
        (
            "[consent]",
            format!("{:?}", old.consent) != format!("{:?}", new.consent),
        ),
        ("[addresses]", old.addresses != new.addresses),
        (
            "[classify]",
            format!("{:?}", old.classifier) != format!("{:?}", new.classifier),
        ),
        (
            "[unsubscribe]",
            format!("{:?}", old.unsubscribe) != format!("{:?}", new.unsubscribe),
        ),
        (
            "[web]",
            web_text(old.web.as_ref()) != web_text(new.web.as_ref()),
        ),
        (
            "[intake]",
            format!("{:?}", old.intake) != format!("{:?}", new.intake),
        ),
        ("[api]", old.api != new.api),
        ("[sms]", old.phones != new.phones || old.sms != new.sms),
    ] {
        if differs {
            changes.applied.push(section);
        }
    }
    (new, changes)
}

/// `[web]` for comparison, its list names in order (a `HashMap` prints in any order).
fn web_text(config: Option<&super::WebConfig>) -> String {
    config.map_or_else(String::new, |w| {
        let names: std::collections::BTreeMap<_, _> = w.list_names.iter().collect();
        format!(
            "{:?} {:?} {:?} {:?} {} {:?} {:?} {:?} {:?}",
            w.trusted_proxies,
            w.sender_name,
            w.undo_window,
            w.rate_limit,
            w.max_connections,
            names,
            w.templates,
            w.brand,
            w.consent_default
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("t.toml"), text, &Overrides::default()).unwrap()
    }

    #[test]
    fn rules_apply_and_sockets_wait_for_a_restart() {
        let old = parse("[milter]\nsocket = \"inet:127.0.0.1:1\"\n");
        let new = parse(
            "[milter]\nsocket = \"inet:127.0.0.1:2\"\non_store_error = \"accept\"\n\
             [[classify.senders]]\nsender = \"news@example.com\"\n",
        );
        let (kept, changes) = reconcile(&old, new);
        assert_eq!(kept.milter.socket, old.milter.socket);
        assert_eq!(changes.need_restart, ["milter.socket"]);
        assert_eq!(changes.applied, ["[milter]", "[classify]"]);
        assert_eq!(kept.classifier.sender_rules.len(), 1);
        let longer = parse("[milter]\nsocket = \"inet:127.0.0.1:1\"\nidle_timeout = \"1h\"\n");
        let (kept, changes) = reconcile(&old, longer);
        assert_eq!(changes.need_restart, ["milter.idle_timeout"]);
        assert_eq!(kept.milter.idle_timeout, old.milter.idle_timeout);
        let (_, none) = reconcile(&old, parse("[milter]\nsocket = \"inet:127.0.0.1:1\"\n"));
        assert_eq!(none, Changes::default());
    }
}
