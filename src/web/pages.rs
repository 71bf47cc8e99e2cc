//! The HTML a person sees, rendered from templates (minijinja) so that operators can brand
//! the pages without touching the code: the defaults in `templates/` are built in, and a
//! file of the same name in `[web] templates` replaces one (`base.html` for the frame,
//! `style.css`, `messages.toml` for the words). `[web.brand]` gives the logo, the accent
//! colour and the footer's links without any template at all.
//!
//! Pages work without JavaScript, in English or French by `Accept-Language`. The style
//! sheet and the logo are served from `/u/assets/` (under the same path as the links, so
//! one proxy rule covers them), which lets the Content-Security-Policy allow nothing but
//! our own origin. Every template is rendered once when the pages are loaded, so a broken
//! override stops the start or the reload, not a person's request.

use super::WebState;
use crate::config::{Brand, WebConfig};
use minijinja::{Environment, State, Value, value::Kwargs};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

/// The Content-Security-Policy of every response: our own style sheet and logo, forms
/// posting back to us, nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The largest logo served.
const MAX_LOGO: u64 = 512 * 1024;

/// The built-in templates, by name.
const DEFAULTS: [(&str, &str); 7] = [
    ("base.html", include_str!("../../templates/base.html")),
    (
        "preferences.html",
        include_str!("../../templates/preferences.html"),
    ),
    ("done.html", include_str!("../../templates/done.html")),
    ("undone.html", include_str!("../../templates/undone.html")),
    ("problem.html", include_str!("../../templates/problem.html")),
    ("style.css", include_str!("../../templates/style.css")),
    (
        "messages.toml",
        include_str!("../../templates/messages.toml"),
    ),
];

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

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }
}

/// Templates that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("messages.toml: {0}")]
    Messages(String),
    #[error("logo {path}: larger than {MAX_LOGO} bytes, or not a .png, .svg, .jpg or .webp file")]
    Logo { path: PathBuf },
}

/// The logo, served as it is.
pub struct Logo {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// The loaded templates, texts, style sheet and logo.
pub struct Pages {
    env: Environment<'static>,
    /// Language code → key → text.
    messages: Arc<BTreeMap<String, BTreeMap<String, String>>>,
    pub css: String,
    pub logo: Option<Logo>,
    brand: Brand,
    sender: String,
}

/// Where a page's links lead, relative to the page (so that a proxy may mount the pages
/// under any path): the page's token URL and the assets.
#[derive(Clone, Copy, Debug)]
pub enum Depth {
    /// The page is `/u/{token}`.
    Token,
    /// The page is `/u/{token}/something`.
    Action,
}

/// One list on the preferences page.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ListView {
    pub id: String,
    pub name: String,
    pub subscribed: bool,
}

impl Pages {
    /// Loads the templates (the overrides in `config.templates` over the built-in ones),
    /// the texts and the logo, and renders each page once with sample values.
    pub fn load(config: &WebConfig) -> Result<Self, PagesError> {
        let read = |name: &str| -> Result<String, PagesError> {
            if let Some(dir) = &config.templates {
                let path = dir.join(name);
                match std::fs::read_to_string(&path) {
                    Ok(text) => return Ok(text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(PagesError::Read { path, source }),
                }
            }
            Ok(DEFAULTS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| (*text).to_owned())
                .unwrap_or_default())
        };
        let mut messages: BTreeMap<String, BTreeMap<String, String>> =
            toml::from_str(DEFAULTS[6].1).map_err(|e| PagesError::Messages(e.to_string()))?;
        if config.templates.is_some() {
            let given: BTreeMap<String, BTreeMap<String, String>> =
                toml::from_str(&read("messages.toml")?)
                    .map_err(|e| PagesError::Messages(e.to_string()))?;
            for (lang, texts) in given {
                messages.entry(lang).or_default().extend(texts);
            }
        }
        let messages = Arc::new(messages);
        let mut env = Environment::new();
        for (name, _) in &DEFAULTS[..6] {
            let text = read(name)?;
            env.add_template_owned(*name, text)
                .map_err(|e| PagesError::Template {
                    name: (*name).to_owned(),
                    message: e.to_string(),
                })?;
        }
        let texts = messages.clone();
        env.add_function(
            "msg",
            move |state: &State, key: &str, kwargs: Kwargs| -> Result<Value, minijinja::Error> {
                let lang = state
                    .lookup("lang")
                    .and_then(|l| l.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "en".into());
                let text = texts
                    .get(&lang)
                    .and_then(|t| t.get(key))
                    .or_else(|| texts.get("en").and_then(|t| t.get(key)))
                    .cloned()
                    .unwrap_or_else(|| key.to_owned());
                Ok(Value::from_safe_string(fill(&text, &kwargs)))
            },
        );
        let logo = config
            .brand
            .logo_file
            .as_deref()
            .map(read_logo)
            .transpose()?;
        let css = env
            .get_template("style.css")
            .and_then(|t| t.render(minijinja::context! { accent => config.brand.accent }))
            .map_err(|e| PagesError::Template {
                name: "style.css".into(),
                message: e.to_string(),
            })?;
        let pages = Self {
            env,
            messages,
            css,
            logo,
            brand: config.brand.clone(),
            sender: config.sender_name.clone(),
        };
        pages.check()?;
        Ok(pages)
    }

    /// Renders every page in both languages with sample values.
    fn check(&self) -> Result<(), PagesError> {
        for lang in [Lang::En, Lang::Fr] {
            let lists = [ListView {
                id: "news".into(),
                name: "News".into(),
                subscribed: true,
            }];
            self.try_preferences(lang, "j***@example.org", Some("News"), false, &lists, false)?;
            self.try_preferences(lang, "j***@example.org", Some("News"), true, &lists, false)?;
            self.try_preferences(lang, "j***@example.org", None, false, &lists, true)?;
            self.try_done(
                lang,
                Depth::Action,
                DoneView {
                    message: "unsubscribed_list",
                    title: "unsubscribed_title",
                    address: "j***@example.org",
                    list: "News",
                    base: "t",
                    action: Some("0011223344556677"),
                    undo_minutes: Some(30),
                },
            )?;
            self.try_render(
                lang,
                "undone.html",
                "undone_title",
                Depth::Action,
                "t",
                minijinja::context! {
                    address => "j***@example.org",
                },
            )?;
            self.try_render(
                lang,
                "problem.html",
                "invalid_link_title",
                Depth::Token,
                "t",
                minijinja::context! {
                    text => "x",
                },
            )?;
        }
        Ok(())
    }

    /// The text `key` in `lang` (English when the language lacks it).
    pub fn text(&self, lang: Lang, key: &str) -> String {
        self.messages
            .get(lang.code())
            .and_then(|t| t.get(key))
            .or_else(|| self.messages.get("en").and_then(|t| t.get(key)))
            .cloned()
            .unwrap_or_else(|| key.to_owned())
    }

    fn try_render(
        &self,
        lang: Lang,
        template: &str,
        title_key: &str,
        depth: Depth,
        token: &str,
        page: Value,
    ) -> Result<String, PagesError> {
        // Relative links (a proxy may mount the pages under any path), written as they
        // are: a token that resolved is base64url, and any other is left out.
        let token = match token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            true => token,
            false => "",
        };
        let (base, assets) = match depth {
            Depth::Token => (token.to_owned(), "assets"),
            Depth::Action => (format!("../{token}"), "../assets"),
        };
        let (base, assets) = (
            Value::from_safe_string(base),
            Value::from_safe_string(assets.to_owned()),
        );
        let texts = self.messages.get(lang.code()).cloned().unwrap_or_default();
        let frame = minijinja::context! {
            lang => lang.code(),
            t => texts,
            title => self.text(lang, title_key),
            sender => self.sender,
            logo => self.logo.is_some(),
            footer => self.brand.footer,
            privacy_url => self.brand.privacy_url,
            contact_url => self.brand.contact_url,
            base => base,
            assets => assets,
        };
        self.env
            .get_template(template)
            .and_then(|t| t.render(minijinja::context! { ..frame, ..page }))
            .map_err(|e| PagesError::Template {
                name: template.to_owned(),
                message: crate::error_chain(&e),
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn try_preferences(
        &self,
        lang: Lang,
        address: &str,
        asked: Option<&str>,
        asked_done: bool,
        lists: &[ListView],
        all_off: bool,
    ) -> Result<String, PagesError> {
        self.try_render(
            lang,
            "preferences.html",
            "preferences_title",
            Depth::Token,
            "t",
            minijinja::context! {
                address, asked, asked_done, lists, all_off,
            },
        )
    }

    fn try_done(&self, lang: Lang, depth: Depth, view: DoneView) -> Result<String, PagesError> {
        self.try_render(
            lang,
            "done.html",
            view.title,
            depth,
            view.base,
            minijinja::context! {
                message => view.message,
                address => view.address,
                list => view.list,
                action => view.action,
                undo_minutes => view.undo_minutes,
            },
        )
    }

    /// A page, or (should a template fail at a request after all) the plain problem text.
    fn or_plain(&self, lang: Lang, result: Result<String, PagesError>) -> String {
        result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "a page template failed");
            format!(
                "<!DOCTYPE html><html lang=\"{}\"><title>{}</title><p>{}</p></html>\n",
                lang.code(),
                escape(&self.text(lang, "unavailable_title")),
                escape(&self.text(lang, "unavailable"))
            )
        })
    }

    /// The preferences page behind the link: changes nothing. `asked` is the link's list,
    /// `asked_done` whether the address already left it.
    #[allow(clippy::too_many_arguments)]
    pub fn preferences(
        &self,
        lang: Lang,
        token: &str,
        address: &str,
        asked: Option<&str>,
        asked_done: bool,
        lists: &[ListView],
        all_off: bool,
    ) -> String {
        let page = self.try_render(
            lang,
            "preferences.html",
            "preferences_title",
            Depth::Token,
            token,
            minijinja::context! {
                address, asked, asked_done, lists, all_off,
            },
        );
        self.or_plain(lang, page)
    }

    /// After a change: what was done, and the undo button while it may be undone.
    pub fn done(&self, lang: Lang, depth: Depth, view: DoneView) -> String {
        let page = self.try_done(lang, depth, view);
        self.or_plain(lang, page)
    }

    /// After an undo.
    pub fn undone(&self, lang: Lang, token: &str, address: &str) -> String {
        let page = self.try_render(
            lang,
            "undone.html",
            "undone_title",
            Depth::Action,
            token,
            minijinja::context! {
                address,
            },
        );
        self.or_plain(lang, page)
    }

    /// A problem page.
    pub fn problem(&self, lang: Lang, problem: Problem, depth: Depth) -> String {
        let (title, text) = problem.keys();
        let page = self.try_render(
            lang,
            "problem.html",
            title,
            depth,
            "",
            minijinja::context! {
                text => self.text(lang, text),
            },
        );
        self.or_plain(lang, page)
    }

    /// The name shown for the list `id` (`[web.lists]`, or the id).
    pub fn list_name(state: &WebState, lang: Lang, scope: &crate::consent::Scope) -> String {
        match scope {
            crate::consent::Scope::All => state
                .pages
                .text(lang, "all_marketing")
                .replace("{sender}", &state.config.sender_name),
            crate::consent::Scope::List(id) => state
                .config
                .list_names
                .get(scope)
                .cloned()
                .unwrap_or_else(|| id.clone()),
        }
    }
}

/// What the page after a change shows.
#[derive(Clone, Copy, Debug)]
pub struct DoneView<'a> {
    /// The message's key in `messages.toml`.
    pub message: &'a str,
    pub title: &'a str,
    pub address: &'a str,
    pub list: &'a str,
    /// The token, for the page's links.
    pub base: &'a str,
    /// The change's id, for its undo.
    pub action: Option<&'a str>,
    pub undo_minutes: Option<u64>,
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

impl Problem {
    /// The title's and the text's keys.
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Self::InvalidLink => ("invalid_link_title", "invalid_link"),
            Self::CannotUndo => ("cannot_undo_title", "cannot_undo"),
            Self::Unavailable => ("unavailable_title", "unavailable"),
            Self::TooManyRequests => ("too_many_title", "too_many"),
        }
    }
}

/// `text` with each `{name}` replaced by the escaped value of `name` in `kwargs`, in bold
/// (a number as it is).
fn fill(text: &str, kwargs: &Kwargs) -> String {
    let mut out = escape(text);
    for name in kwargs.args() {
        let Ok(value) = kwargs.get::<Value>(name) else {
            continue;
        };
        let shown = match value.as_str() {
            Some(s) => format!("<strong>{}</strong>", escape(s)),
            None if value.is_none() || value.is_undefined() => String::new(),
            None => escape(&value.to_string()),
        };
        out = out.replace(&format!("{{{name}}}"), &shown);
    }
    out
}

fn read_logo(path: &Path) -> Result<Logo, PagesError> {
    let bad = || PagesError::Logo {
        path: path.to_owned(),
    };
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => return Err(bad()),
    };
    let meta = std::fs::metadata(path).map_err(|source| PagesError::Read {
        path: path.to_owned(),
        source,
    })?;
    if meta.len() > MAX_LOGO {
        return Err(bad());
    }
    let bytes = std::fs::read(path).map_err(|source| PagesError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(Logo {
        bytes,
        content_type,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(templates: Option<PathBuf>) -> WebConfig {
        WebConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            trusted_proxies: Vec::new(),
            sender_name: "Example <News>".into(),
            undo_window: std::time::Duration::from_secs(1800),
            rate_limit: 0,
            max_connections: 1,
            list_names: Default::default(),
            templates,
            brand: Brand {
                accent: "#0b5fff".into(),
                ..Brand::default()
            },
            consent_default: Default::default(),
        }
    }

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
    fn values_are_escaped_in_pages_and_messages() {
        let pages = Pages::load(&config(None)).unwrap();
        let lists = [ListView {
            id: "a\"b".into(),
            name: "<script>alert(1)</script>".into(),
            subscribed: false,
        }];
        let html = pages.preferences(
            Lang::En,
            "tok",
            "j***@example.org",
            Some("<b>x</b>"),
            false,
            &lists,
            false,
        );
        assert!(
            !html.contains("<script>") && html.contains("&lt;script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("<strong>&lt;b&gt;x&lt;/b&gt;</strong>"),
            "{html}"
        );
        assert!(html.contains("value=\"a&quot;b\""), "{html}");
        assert!(html.contains("Example &lt;News&gt;"), "{html}");
        assert!(pages.css.contains("--accent:#0b5fff"), "{}", pages.css);
    }

    #[test]
    fn an_override_replaces_a_template_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("messages.toml"),
            "[en]\nsave = \"Keep these\"\n",
        )
        .unwrap();
        let pages = Pages::load(&config(Some(dir.path().to_owned()))).unwrap();
        let lists = [ListView {
            id: "a".into(),
            name: "A".into(),
            subscribed: true,
        }];
        let html = pages.preferences(
            Lang::En,
            "tok",
            "j***@example.org",
            None,
            false,
            &lists,
            false,
        );
        assert!(html.contains("Keep these"), "{html}");
        // A French text not overridden stays.
        let fr = pages.preferences(
            Lang::Fr,
            "tok",
            "j***@example.org",
            None,
            false,
            &lists,
            false,
        );
        assert!(fr.contains("Enregistrer mes choix"), "{fr}");

        std::fs::write(
            dir.path().join("base.html"),
            "{% block content %}{% endblok %}",
        )
        .unwrap();
        let error = Pages::load(&config(Some(dir.path().to_owned())))
            .err()
            .unwrap();
        assert!(error.to_string().contains("base.html"), "{error}");
    }
}
