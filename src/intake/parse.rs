//! Reading an unsubscribe mail: is it automatic, where is a token, is its sender
//! authenticated. Pure functions over a parsed message, so every rule is tested on its own.

use crate::token::TOKEN_CHARS;
use mail_parser::{Message, MimeHeaders};

/// Why a message is not a request from a person, if it is not.
pub fn automatic(message: &Message, envelope_sender: Option<&str>) -> Option<&'static str> {
    if envelope_sender.is_some_and(|s| s.trim().trim_matches(['<', '>']).is_empty()) {
        return Some("null envelope sender (a bounce or notification)");
    }
    if message.is_content_type("multipart", "report") {
        return Some("a delivery or disposition report (multipart/report)");
    }
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    // auto-replied (vacation, out of office) and auto-notified are responses nobody asked
    // for. auto-generated is not refused: mail clients mark the unsubscribe mail they send
    // for a person's click that way.
    if header("Auto-Submitted")
        .is_some_and(|v| v.starts_with("auto-replied") || v.starts_with("auto-notified"))
    {
        return Some("Auto-Submitted says it is an automatic reply");
    }
    for name in [
        "X-Autoreply",
        "X-Autorespond",
        "X-Autoresponder",
        "X-Auto-Response",
    ] {
        if header(name).is_some() {
            return Some("an auto-reply header is present");
        }
    }
    if header("Precedence")
        .is_some_and(|v| matches!(v.as_str(), "auto_reply" | "bulk" | "junk" | "list"))
    {
        return Some("Precedence marks it as automatic or bulk mail");
    }
    if header("X-Failed-Recipients").is_some() {
        return Some("X-Failed-Recipients marks it as a bounce");
    }
    None
}

/// Every run of exactly [`TOKEN_CHARS`] base32 characters in `text`, lower-cased:
/// the candidates that might be a token. The MAC decides which, if any, is one.
pub fn token_candidates(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| word.len() == TOKEN_CHARS)
        .map(str::to_ascii_lowercase)
        .filter(|word| {
            word.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        })
}

/// The token of an address `LOCAL+TOKEN@DOMAIN`, if `address` is one for our `local` and
/// `domain` (compared case-insensitively; MTAs may lower-case the whole address).
pub fn plus_token(address: &str, local: &str, domain: &str) -> Option<String> {
    let address = address.trim().trim_matches(['<', '>']);
    let (left, right) = address.rsplit_once('@')?;
    let (prefix, token) = left.split_once('+')?;
    (prefix.eq_ignore_ascii_case(local) && right.eq_ignore_ascii_case(domain))
        .then(|| token.to_ascii_lowercase())
}

/// Whether `address` is `local@domain`, with or without a `+TOKEN` (or other detail), in
/// any case.
pub fn is_unsubscribe_address(address: &str, local: &str, domain: &str) -> bool {
    let address = address.trim().trim_matches(['<', '>']);
    let Some((left, right)) = address.rsplit_once('@') else {
        return false;
    };
    let prefix = left.split_once('+').map_or(left, |(p, _)| p);
    prefix.eq_ignore_ascii_case(local) && right.eq_ignore_ascii_case(domain)
}

/// The domain of the `From` address when a trusted `Authentication-Results` header says
/// DMARC passed for it, or DKIM passed with a signing domain aligned with it (the same
/// domain, or a parent of it). Only the first header from a trusted authserv-id counts:
/// the receiving MTA's own, which it must have cleaned of forged copies.
pub fn authenticated(message: &Message, from_domain: &str, trusted: &[String]) -> bool {
    let Some(results) = message
        .headers_raw()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Authentication-Results"))
        .map(|(_, value)| value)
        .find(|value| {
            let id = value.split(';').next().unwrap_or("").trim();
            let id = id.split_whitespace().next().unwrap_or("");
            trusted.iter().any(|t| t.eq_ignore_ascii_case(id))
        })
    else {
        return false;
    };
    let from_domain = from_domain.to_ascii_lowercase();
    let aligned = |d: &str| {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        !d.is_empty() && (from_domain == d || from_domain.ends_with(&format!(".{d}")))
    };
    let unfolded = results.replace(['\r', '\n'], " ");
    unfolded.split(';').skip(1).any(|clause| {
        let words: Vec<&str> = clause.split_whitespace().collect();
        let Some((method, result)) = words.first().and_then(|w| w.split_once('=')) else {
            return false;
        };
        if !result.eq_ignore_ascii_case("pass") {
            return false;
        }
        let property = |key: &str| {
            words.iter().find_map(|w| {
                w.split_once('=')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v)
            })
        };
        match method.to_ascii_lowercase().as_str() {
            "dmarc" => property("header.from").is_some_and(aligned),
            "dkim" => property("header.d")
                .or(property("header.i").map(|i| i.rsplit('@').next().unwrap_or(i)))
                .is_some_and(aligned),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn parse(raw: &str) -> Message<'_> {
        MessageParser::default().parse(raw.as_bytes()).unwrap()
    }

    #[test]
    fn automatic_mail_is_recognized() {
        let cases = [
            ("Auto-Submitted: auto-replied\r\n", true),
            ("Auto-Submitted: no\r\n", false),
            ("Auto-Submitted: auto-generated\r\n", false),
            ("Auto-Submitted: auto-notified\r\n", true),
            ("X-Autoreply: yes\r\n", true),
            ("Precedence: auto_reply\r\n", true),
            (
                "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n",
                true,
            ),
            ("", false),
        ];
        for (header, expected) in cases {
            let raw = format!("From: a@example.org\r\n{header}Subject: s\r\n\r\nbody\r\n");
            assert_eq!(
                automatic(&parse(&raw), Some("a@example.org")).is_some(),
                expected,
                "{header}"
            );
        }
        assert!(automatic(&parse("Subject: s\r\n\r\nb\r\n"), Some("<>")).is_some());
    }

    #[test]
    fn token_candidates_are_whole_base32_words() {
        let t = "a".repeat(34);
        let text = format!(
            "see https://x/u/{} or {}x and {}",
            t.to_uppercase(),
            t,
            "b".repeat(33)
        );
        assert_eq!(token_candidates(&text).collect::<Vec<_>>(), [t]);
        assert_eq!(token_candidates(&"a1".repeat(17)).count(), 0);
    }

    #[test]
    fn plus_addresses() {
        assert_eq!(
            plus_token(
                "<Unsubscribe+ABC@Example.com>",
                "unsubscribe",
                "example.com"
            ),
            Some("abc".into())
        );
        assert_eq!(
            plus_token("unsubscribe@example.com", "unsubscribe", "example.com"),
            None
        );
        assert_eq!(
            plus_token("other+abc@example.com", "unsubscribe", "example.com"),
            None
        );
        assert!(is_unsubscribe_address(
            "UNSUBSCRIBE+x@EXAMPLE.COM",
            "unsubscribe",
            "example.com"
        ));
        assert!(is_unsubscribe_address(
            "<unsubscribe@example.com>",
            "unsubscribe",
            "example.com"
        ));
        assert!(!is_unsubscribe_address(
            "unsubscribe@example.org",
            "unsubscribe",
            "example.com"
        ));
    }

    #[test]
    fn authentication_results_from_a_trusted_server_with_alignment() {
        let trusted = vec!["mx.example.net".to_owned()];
        let msg = |ar: &str| {
            format!("Authentication-Results: {ar}\r\nFrom: p@mail.example.org\r\n\r\nx\r\n")
        };
        let pass = [
            "mx.example.net; dkim=pass header.d=example.org header.s=s1",
            "mx.example.net 1; spf=fail; dmarc=pass header.from=mail.example.org",
            "mx.example.net;\r\n\tdkim=pass header.i=@mail.example.org",
        ];
        for ar in pass {
            assert!(
                authenticated(&parse(&msg(ar)), "mail.example.org", &trusted),
                "{ar}"
            );
        }
        let fail = [
            "mx.example.net; dkim=pass header.d=evil.example",
            "mx.example.net; dkim=fail header.d=example.org",
            "other.example; dkim=pass header.d=example.org",
            "mx.example.net; spf=pass smtp.mailfrom=example.org",
            "mx.example.net; dkim=pass header.d=ample.org",
        ];
        for ar in fail {
            assert!(
                !authenticated(&parse(&msg(ar)), "mail.example.org", &trusted),
                "{ar}"
            );
        }
    }
}
