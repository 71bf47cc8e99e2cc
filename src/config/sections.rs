//! Validation of the optional sections: each turns its serde form into typed settings,
//! naming the key of anything it refuses.

use super::{
    ApiConfig, ApiRights, ApiTokenSpec, ConfigError, ExistingHeader, MultipleRecipients,
    UnsubscribeConfig, WebConfig, WebhookConfig, file,
};
use crate::{
    consent::Scope,
    headers::Links,
    intake::{After, ConfirmationConfig, IntakeConfig},
    token::{KeySpec, MAX_PREFIX_CHARS},
};
use std::{fmt, path::PathBuf, time::Duration};

pub(super) fn web(w: &file::WebSection, invalid: &Invalid) -> Result<WebConfig, ConfigError> {
    let listen = w.listen.parse().map_err(|_| {
        invalid(
            "web.listen",
            &expected(&w.listen, "ADDRESS:PORT such as 127.0.0.1:8080 or [::]:443"),
        )
    })?;
    let tls = match (&w.tls_cert, &w.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (Some(_), None) => return Err(invalid("web.tls_key", &"is needed with web.tls_cert")),
        (None, Some(_)) => return Err(invalid("web.tls_cert", &"is needed with web.tls_key")),
    };
    let trusted_proxies = w
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        &format!("web.trusted_proxies[{i}]"),
                        &expected(p, "an address or a network such as 10.0.0.0/8"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let undo_window =
        humantime::parse_duration(&w.undo_window).map_err(|e| invalid("web.undo_window", &e))?;
    if w.sender_name.trim().is_empty() {
        return Err(invalid("web.sender_name", &"must not be empty"));
    }
    if w.max_connections == 0 {
        return Err(invalid("web.max_connections", &"must be at least 1"));
    }
    let list_names = w
        .lists
        .iter()
        .map(|(id, name)| {
            let scope = id
                .parse::<Scope>()
                .map_err(|e| invalid(&format!("web.lists.{id}"), &e))?;
            Ok((scope, name.clone()))
        })
        .collect::<Result<_, ConfigError>>()?;
    let b = &w.brand;
    let accent = match &b.accent {
        None => super::Brand::default().accent,
        Some(colour) => {
            let hex = colour.trim().strip_prefix('#').unwrap_or("");
            if !matches!(hex.len(), 3 | 6) || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    "web.brand.accent",
                    &expected(colour, "a colour as #rgb or #rrggbb, such as #2457d6"),
                ));
            }
            format!("#{}", hex.to_ascii_lowercase())
        }
    };
    let link = |key: &str, url: &Option<String>| -> Result<Option<String>, ConfigError> {
        url.as_ref()
            .map(|u| {
                let u = u.trim();
                match reqwest::Url::parse(u) {
                    Ok(parsed) if matches!(parsed.scheme(), "https" | "mailto") => Ok(u.to_owned()),
                    _ => Err(invalid(key, &expected(u, "an https:// or mailto: URL"))),
                }
            })
            .transpose()
    };
    let brand = super::Brand {
        logo_file: b.logo_file.as_ref().map(PathBuf::from),
        accent,
        privacy_url: link("web.brand.privacy_url", &b.privacy_url)?,
        contact_url: link("web.brand.contact_url", &b.contact_url)?,
        footer: b
            .footer
            .as_ref()
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty()),
    };
    Ok(WebConfig {
        listen,
        tls,
        trusted_proxies,
        sender_name: w.sender_name.trim().to_owned(),
        undo_window,
        rate_limit: w.rate_limit,
        max_connections: w.max_connections,
        list_names,
        templates: w.templates.as_ref().map(PathBuf::from),
        brand,
        consent_default: Default::default(),
    })
}

pub(super) fn api(a: &file::ApiSection, invalid: &Invalid) -> Result<ApiConfig, ConfigError> {
    let listen = a.listen.parse().map_err(|_| {
        invalid(
            "api.listen",
            &expected(&a.listen, "ADDRESS:PORT such as 127.0.0.1:8026"),
        )
    })?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (Some(_), None) => return Err(invalid("api.tls_key", &"is needed with api.tls_cert")),
        (None, Some(_)) => return Err(invalid("api.tls_cert", &"is needed with api.tls_key")),
    };
    if a.max_connections == 0 {
        return Err(invalid("api.max_connections", &"must be at least 1"));
    }
    if a.max_import_bytes == 0 {
        return Err(invalid("api.max_import_bytes", &"must be at least 1"));
    }
    if a.tokens.is_empty() {
        return Err(invalid(
            "api.tokens",
            &"needs at least one token: every route of the API asks for one",
        ));
    }
    let mut names = std::collections::HashSet::new();
    let tokens = a
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let key = |field| format!("api.tokens[{i}].{field}");
            let rights = match t.rights.as_str() {
                "read" => ApiRights::Read,
                "read-write" => ApiRights::ReadWrite,
                other => {
                    return Err(invalid(
                        &key("rights"),
                        &expected(other, "read or read-write"),
                    ));
                }
            };
            let file = PathBuf::from(&t.file);
            let name = match &t.name {
                Some(name) => name.trim().to_owned(),
                None => file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    &key("name"),
                    &expected(&name, "a name of visible characters without spaces"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(
                    &key("name"),
                    &format!("{name:?} names two tokens; give each its own name"),
                ));
            }
            Ok(ApiTokenSpec { file, rights, name })
        })
        .collect::<Result<_, _>>()?;
    Ok(ApiConfig {
        listen,
        tls,
        max_connections: a.max_connections,
        max_import_bytes: a.max_import_bytes,
        tokens,
    })
}

pub(super) fn webhooks(
    entries: &[file::WebhookEntry],
    invalid: &Invalid,
) -> Result<Vec<WebhookConfig>, ConfigError> {
    let mut names = std::collections::HashSet::new();
    entries
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let key = |field| format!("webhooks[{i}].{field}");
            let url = reqwest::Url::parse(&w.url).map_err(|e| invalid(&key("url"), &format!("{:?}: {e}", w.url)))?;
            let host = url.host_str().unwrap_or_default().to_owned();
            let loopback = host == "localhost"
                || host
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            match url.scheme() {
                "https" => {}
                "http" if loopback => {}
                _ => {
                    return Err(invalid(
                        &key("url"),
                        &expected(&w.url, "an https:// URL (events carry addresses; http:// only to a loopback address)"),
                    ));
                }
            }
            let name = w.name.clone().unwrap_or(host);
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(&key("name"), &expected(&name, "a name of visible characters without spaces")));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(&key("name"), &format!("{name:?} names two webhooks; give each its own name")));
            }
            let retry_for = humantime::parse_duration(&w.retry_for).map_err(|e| invalid(&key("retry_for"), &e))?;
            let timeout = humantime::parse_duration(&w.timeout).map_err(|e| invalid(&key("timeout"), &e))?;
            if timeout.is_zero() {
                return Err(invalid(&key("timeout"), &"must be longer than zero"));
            }
            Ok(WebhookConfig {
                name,
                url: url.to_string(),
                secret_file: PathBuf::from(&w.secret_file),
                retry_for,
                timeout,
            })
        })
        .collect()
}

pub(super) type Invalid<'a> = dyn Fn(&str, &dyn fmt::Display) -> ConfigError + 'a;

/// The mode and group of a Unix socket, from keys `{prefix}_mode` and `{prefix}_group`.
pub(super) fn permissions(
    mode: &str,
    group: Option<&str>,
    prefix: &str,
    invalid: &Invalid,
) -> Result<crate::socket::UnixPermissions, ConfigError> {
    let mode =
        crate::socket::parse_mode(mode).map_err(|e| invalid(&format!("{prefix}_mode"), &e))?;
    let group = group
        .map(|g| crate::socket::group_id(g).map_err(|e| invalid(&format!("{prefix}_group"), &e)))
        .transpose()?;
    Ok(crate::socket::UnixPermissions { mode, group })
}

pub(super) fn unsubscribe(
    u: &file::UnsubscribeSection,
    invalid: &Invalid,
) -> Result<UnsubscribeConfig, ConfigError> {
    let https_base = u.https_base.trim_end_matches('/');
    let host = https_base.strip_prefix("https://").unwrap_or("");
    if host.is_empty()
        || !https_base.bytes().all(|b| b.is_ascii_graphic())
        || "<>\"?#".chars().any(|c| host.contains(c))
    {
        return Err(invalid(
            "unsubscribe.https_base",
            &expected(
                &u.https_base,
                "an https:// URL (RFC 8058 one-click needs HTTPS)",
            ),
        ));
    }
    let (local, domain) = u.mailto.rsplit_once('@').unwrap_or(("", ""));
    let local_ok = (1..=MAX_PREFIX_CHARS).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    let domain = idna::domain_to_ascii(domain)
        .ok()
        .filter(|d| !d.is_empty() && d.contains('.'));
    let (true, Some(mailto_domain)) = (local_ok, domain) else {
        return Err(invalid(
            "unsubscribe.mailto",
            &expected(
                &u.mailto,
                &format!(
                    "an address whose local part has 1 to {MAX_PREFIX_CHARS} letters, digits, '-', '_' or '.', so that LOCAL+TOKEN fits 64 octets"
                ),
            ),
        ));
    };
    let multiple_recipients = match u.multiple_recipients.as_str() {
        "list-level" => MultipleRecipients::ListLevel,
        "reject" => MultipleRecipients::Reject,
        "skip" => MultipleRecipients::Skip,
        other => {
            return Err(invalid(
                "unsubscribe.multiple_recipients",
                &expected(other, "list-level, reject or skip"),
            ));
        }
    };
    let existing_header = match u.existing_header.as_str() {
        "replace" => ExistingHeader::Replace,
        "keep" => ExistingHeader::Keep,
        other => {
            return Err(invalid(
                "unsubscribe.existing_header",
                &expected(other, "replace or keep"),
            ));
        }
    };
    let token_lifetime = humantime::parse_duration(&u.token_lifetime)
        .map_err(|e| invalid("unsubscribe.token_lifetime", &e))?;
    if token_lifetime < Duration::from_secs(30 * 86_400) {
        return Err(invalid(
            "unsubscribe.token_lifetime",
            &"must be at least 30d: CAN-SPAM requires links to work for 30 days",
        ));
    }
    if u.keys.is_empty() {
        return Err(invalid(
            "unsubscribe.keys",
            &"at least one key is needed to sign tokens",
        ));
    }
    let keys = u
        .keys
        .iter()
        .map(|k| KeySpec {
            id: k.id,
            file: PathBuf::from(&k.file),
        })
        .collect();
    Ok(UnsubscribeConfig {
        links: Links {
            https_base: https_base.to_owned(),
            mailto_local: local.to_owned(),
            mailto_domain,
        },
        multiple_recipients,
        existing_header,
        token_lifetime,
        generate_missing_key: u.generate_missing_key,
        keys,
    })
}

pub(super) fn expected(got: &str, expected: &str) -> String {
    format!("{got:?} is not allowed; expected {expected}")
}

pub(super) fn intake(
    i: &file::IntakeSection,
    invalid: &Invalid,
) -> Result<IntakeConfig, ConfigError> {
    let after = match i.after.as_str() {
        "discard" => After::Discard,
        "deliver" => After::Deliver,
        other => {
            return Err(invalid(
                "intake.after",
                &expected(other, "discard or deliver"),
            ));
        }
    };
    if i.max_connections == 0 {
        return Err(invalid("intake.max_connections", &"must be at least 1"));
    }
    if i.max_bytes < 1024 {
        return Err(invalid("intake.max_bytes", &"must be at least 1024"));
    }
    let confirmation =
        i.confirmation
            .as_ref()
            .map(|c| {
                let (host, port) = c
                    .relay
                    .rsplit_once(':')
                    .and_then(|(h, p)| {
                        Some((
                            h.trim_matches(['[', ']']).to_owned(),
                            p.parse::<u16>().ok()?,
                        ))
                    })
                    .filter(|(h, _)| !h.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "intake.confirmation.relay",
                            &expected(&c.relay, "HOST:PORT such as 127.0.0.1:25"),
                        )
                    })?;
                let from = c.from.parse().map_err(|e| {
                    invalid("intake.confirmation.from", &format!("{:?}: {e}", c.from))
                })?;
                Ok(ConfirmationConfig {
                    relay_host: host,
                    relay_port: port,
                    from,
                    subject: c.subject.clone(),
                    text: c.text.clone(),
                    request_subject: c.request_subject.clone(),
                    request_text: c.request_text.clone(),
                })
            })
            .transpose()?;
    let lmtp = i
        .lmtp
        .as_ref()
        .map(|s| s.parse().map_err(|e| invalid("intake.lmtp", &e)))
        .transpose()?;
    let lmtp_permissions = permissions(
        &i.lmtp_socket_mode,
        i.lmtp_socket_group.as_deref(),
        "intake.lmtp_socket",
        invalid,
    )?;
    Ok(IntakeConfig {
        after,
        milter: i.milter,
        lmtp,
        lmtp_permissions,
        max_bytes: i.max_bytes,
        max_connections: i.max_connections,
        trusted_authserv_ids: i.trusted_authserv_ids.clone(),
        confirmation,
        complaints: None,
    })
}

pub(super) fn complaints(
    c: &file::ComplaintsSection,
    invalid: &Invalid,
) -> Result<crate::intake::ComplaintsConfig, ConfigError> {
    use crate::intake::{ComplaintScope, ComplaintsConfig};
    let address = c
        .address
        .trim()
        .trim_matches(['<', '>'])
        .to_ascii_lowercase();
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {}
        _ => {
            return Err(invalid(
                "complaints.address",
                &expected(&c.address, "an address such as fbl@example.com"),
            ));
        }
    }
    let scope = match c.scope.as_str() {
        "all" => ComplaintScope::All,
        "list" => ComplaintScope::List,
        other => return Err(invalid("complaints.scope", &expected(other, "all or list"))),
    };
    let mut authenticated_senders = Vec::new();
    for domain in &c.authenticated_senders {
        let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() || d.contains(['@', ' ', '/']) || !d.contains('.') {
            return Err(invalid(
                "complaints.authenticated_senders",
                &expected(domain, "a domain such as feedback.example.net"),
            ));
        }
        authenticated_senders.push(d);
    }
    Ok(ComplaintsConfig {
        address,
        scope,
        authenticated_senders,
    })
}
