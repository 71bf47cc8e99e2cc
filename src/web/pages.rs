//! The HTML a person sees: plain pages that work without JavaScript, in English or French
//! by `Accept-Language`, with a style sheet allowed by hash in a strict CSP.

use sha2::{Digest, Sha256};

/// A page language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    /// The best language for an `Accept-Language` header; English when nothing fits.
    pub fn negotiate(accept_language: Option<&str>) -> Lang {
        let mut best = (Lang::En, 0.0f32);
        for item in accept_language.unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("fr") => Lang::Fr,
                Some("en") => Lang::En,
                _ => continue,
            };
            if q > best.1 {
                best = (lang, q);
            }
        }
        best.0
    }

    fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }
}

/// What the page says about the list.
pub enum ListName<'a> {
    /// One list, by its human name.
    Named(&'a str),
    /// All marketing of this sender.
    All { sender: &'a str },
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a;background:#fff}\
h1{font-size:1.5rem}button{font-size:1.1rem;padding:.6rem 1.2rem;border-radius:.3rem;border:2px solid #1a1a1a;background:#1a1a1a;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#1a1a1a}button:focus{outline:3px solid #0a5fff;outline-offset:2px}p.note{color:#444;font-size:.95rem}";

/// The Content-Security-Policy of every page: nothing but our own style sheet and forms
/// posting back to us.
pub fn content_security_policy() -> String {
    use base64::Engine;
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `jane@example.com` as `j***@example.com`, with an IDN domain in Unicode.
pub fn mask(address: &str) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let first: String = local.chars().take(1).collect();
    let (unicode, result) = idna::domain_to_unicode(domain);
    let domain = if result.is_ok() {
        unicode
    } else {
        domain.to_owned()
    };
    format!("{first}***@{domain}")
}

fn page(lang: Lang, title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{CSS}</style></head>\
         <body><main><h1>{}</h1>{body}</main></body></html>\n",
        lang.code(),
        escape(title),
        escape(title)
    )
}

fn list_text(lang: Lang, list: &ListName) -> String {
    match (lang, list) {
        (_, ListName::Named(name)) => escape(name),
        (Lang::En, ListName::All { sender }) => {
            format!("all marketing email from {}", escape(sender))
        }
        (Lang::Fr, ListName::All { sender }) => {
            format!("tous les e-mails marketing de {}", escape(sender))
        }
    }
}

/// The page behind the link: asks, changes nothing.
pub fn confirm(lang: Lang, masked: &str, list: &ListName) -> String {
    let (title, question, button) = match lang {
        Lang::En => ("Unsubscribe", "Unsubscribe", "Unsubscribe"),
        Lang::Fr => ("Désabonnement", "Désabonner", "Me désabonner"),
    };
    // French sets a (narrow) no-break space before a question mark.
    let (from, mark) = match lang {
        Lang::En => ("from", "?"),
        Lang::Fr => ("de", "\u{202f}?"),
    };
    let body = format!(
        "<p>{question} <strong>{}</strong> {from} <strong>{}</strong>{mark}</p>\
         <form method=\"post\" action=\"\">\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <input type=\"hidden\" name=\"via\" value=\"page\">\
         <button type=\"submit\">{button}</button></form>",
        escape(masked),
        list_text(lang, list)
    );
    page(lang, title, &body)
}

/// After the opt-out was recorded.
pub fn done(
    lang: Lang,
    masked: &str,
    list: &ListName,
    token: &str,
    undo_minutes: Option<u64>,
) -> String {
    let (title, text) = match lang {
        Lang::En => ("You are unsubscribed", "will no longer receive"),
        Lang::Fr => ("Vous êtes désabonné", "ne recevra plus"),
    };
    let mut body = format!(
        "<p><strong>{}</strong> {text} <strong>{}</strong>.</p>",
        escape(masked),
        list_text(lang, list)
    );
    if let Some(minutes) = undo_minutes {
        let (button, note) = match lang {
            Lang::En => (
                "Undo: subscribe me again",
                format!("Clicked by mistake? You can undo this for {minutes} minutes."),
            ),
            Lang::Fr => (
                "Annuler : me réabonner",
                format!("Une erreur ? Vous pouvez annuler pendant {minutes} minutes."),
            ),
        };
        body.push_str(&format!(
            "<p class=\"note\">{}</p><form method=\"post\" action=\"{}/undo\">\
             <button class=\"secondary\" type=\"submit\">{button}</button></form>",
            escape(&note),
            escape(token)
        ));
    }
    page(lang, title, &body)
}

/// After an undo.
pub fn undone(lang: Lang, masked: &str, list: &ListName) -> String {
    let (title, text) = match lang {
        Lang::En => ("You are subscribed again", "will receive"),
        Lang::Fr => ("Vous êtes de nouveau abonné", "recevra de nouveau"),
    };
    let body = format!(
        "<p><strong>{}</strong> {text} <strong>{}</strong>.</p>",
        escape(masked),
        list_text(lang, list)
    );
    page(lang, title, &body)
}

/// The pages that report a problem.
#[derive(Clone, Copy, Debug)]
pub enum Problem {
    /// The link is forged, damaged or unknown.
    InvalidLink,
    /// The undo window has passed, or there is nothing to undo.
    CannotUndo,
    /// The store failed; try again.
    Unavailable,
    /// Too many requests from this address.
    TooManyRequests,
}

pub fn problem(lang: Lang, problem: Problem) -> String {
    let (title, text) = match (lang, problem) {
        (Lang::En, Problem::InvalidLink) => (
            "Link not valid",
            "This unsubscribe link is not valid. Please use the link from the email exactly as it was sent.",
        ),
        (Lang::Fr, Problem::InvalidLink) => (
            "Lien non valide",
            "Ce lien de désabonnement n'est pas valide. Utilisez le lien de l'e-mail tel qu'il a été envoyé.",
        ),
        (Lang::En, Problem::CannotUndo) => (
            "Cannot undo",
            "This unsubscribe can no longer be undone from this link.",
        ),
        (Lang::Fr, Problem::CannotUndo) => (
            "Annulation impossible",
            "Ce désabonnement ne peut plus être annulé depuis ce lien.",
        ),
        (Lang::En, Problem::Unavailable) => (
            "Try again later",
            "We cannot handle your request right now. Nothing was changed; please try again in a few minutes.",
        ),
        (Lang::Fr, Problem::Unavailable) => (
            "Réessayez plus tard",
            "Nous ne pouvons pas traiter votre demande pour le moment. Rien n'a été modifié ; réessayez dans quelques minutes.",
        ),
        (Lang::En, Problem::TooManyRequests) => {
            ("Too many requests", "Please wait a minute and try again.")
        }
        (Lang::Fr, Problem::TooManyRequests) => {
            ("Trop de requêtes", "Patientez une minute puis réessayez.")
        }
    };
    page(lang, title, &format!("<p>{}</p>", escape(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_supported_language() {
        assert_eq!(Lang::negotiate(None), Lang::En);
        assert_eq!(Lang::negotiate(Some("fr-CA,fr;q=0.9,en;q=0.8")), Lang::Fr);
        assert_eq!(
            Lang::negotiate(Some("de-DE,de;q=0.9,fr;q=0.5,en;q=0.7")),
            Lang::En
        );
        assert_eq!(Lang::negotiate(Some("de,fr;q=0.3")), Lang::Fr);
        assert_eq!(Lang::negotiate(Some("*")), Lang::En);
    }

    #[test]
    fn addresses_are_masked_and_idn_domains_shown_in_unicode() {
        assert_eq!(mask("jane@example.com"), "j***@example.com");
        assert_eq!(mask("kai@xn--bcher-kva.example"), "k***@bücher.example");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let html = confirm(Lang::En, "j***@example.com", &ListName::Named("<script>"));
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    }
}
