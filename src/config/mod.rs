//! Configuration: read the TOML file, apply command-line overrides, and validate it all
//! into typed values before anything starts, so a mistake is reported once, at start, with
//! the file and the key that hold it.

mod file;
pub mod reload;
mod sections;
mod sms;

use crate::{
    classify::{Classifier, SenderPattern, SenderRule},
    consent::{AddressPolicy, ConsentPolicy, DefaultConsent, Scope},
    headers::Links,
    intake::IntakeConfig,
    socket::SocketSpec,
    token::KeySpec,
};
use file::ConfigFile;
use sections::{expected, intake, unsubscribe, web};
pub use sms::{SmsConfig, TwilioConfig, VonageConfig};
use std::{
    fmt, fs,
    path::{Path, PathBuf},
    time::Duration,
};

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/optout-milter/optout-milter.toml";

/// What the milter answers when the store cannot answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStoreError {
    /// 4.x.x: the MTA keeps the mail and retries. Never lets mail through to an opt-out.
    Tempfail,
    /// Let the mail through: for operators who choose fail-open.
    Accept,
}

/// What happens to a header-classified message whose every recipient opted out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllOptedOut {
    Reject,
    Discard,
}

/// What to do when a marketing message still has several recipients at end of message.
/// A milter cannot give each recipient a header of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultipleRecipients {
    /// A list-wide `mailto:` without token and without one-click (the default: mail keeps
    /// flowing and still carries an RFC 2369 way out).
    ListLevel,
    /// `550 5.5.3`: send marketing one recipient per message.
    Reject,
    /// No unsubscribe header at all.
    Skip,
}

/// What to do with a `List-Unsubscribe` that the sending application already set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistingHeader {
    /// Remove it (and its `List-Unsubscribe-Post`) and add ours, so every header is one
    /// that optout-milter can honour.
    Replace,
    /// Leave the message's own headers and add none.
    Keep,
}

/// The unsubscribe headers' settings.
#[derive(Clone, Debug)]
pub struct UnsubscribeConfig {
    pub links: Links,
    pub multiple_recipients: MultipleRecipients,
    pub existing_header: ExistingHeader,
    pub token_lifetime: Duration,
    pub generate_missing_key: bool,
    pub keys: Vec<KeySpec>,
}

/// The web front's settings.
#[derive(Clone, Debug)]
pub struct WebConfig {
    pub listen: std::net::SocketAddr,
    /// Certificate chain and key files, when the server speaks HTTPS itself.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub sender_name: String,
    pub undo_window: Duration,
    /// Page views and refused links per minute per client network; 0 means no limit.
    pub rate_limit: u32,
    /// The most HTTP connections open at once.
    pub max_connections: usize,
    pub list_names: std::collections::HashMap<Scope, String>,
    /// The folder of template overrides, if any.
    pub templates: Option<PathBuf>,
    pub brand: Brand,
    /// What no record means (`[consent] default`), for the states the page shows.
    pub consent_default: crate::consent::DefaultConsent,
}

/// The pages' branding (`[web.brand]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Brand {
    pub logo_file: Option<PathBuf>,
    pub accent: String,
    pub privacy_url: Option<String>,
    pub contact_url: Option<String>,
    pub footer: Option<String>,
}

impl Default for Brand {
    fn default() -> Self {
        Self {
            logo_file: None,
            accent: "#2457d6".into(),
            privacy_url: None,
            contact_url: None,
            footer: None,
        }
    }
}

/// What a bearer token of the admin API may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiRights {
    Read,
    ReadWrite,
}

/// One bearer token of the admin API: where it is kept, not the token itself (it is read
/// at start and at each reload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenSpec {
    pub file: PathBuf,
    pub rights: ApiRights,
    /// Who changes are recorded as made by.
    pub name: String,
}

/// The admin API's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    pub listen: std::net::SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_connections: usize,
    pub max_import_bytes: usize,
    pub tokens: Vec<ApiTokenSpec>,
}

/// A webhook every change of consent is delivered to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    pub secret_file: PathBuf,
    pub retry_for: Duration,
    pub timeout: Duration,
}

/// The milter's settings.
#[derive(Clone, Debug)]
pub struct MilterConfig {
    pub socket: SocketSpec,
    pub on_store_error: OnStoreError,
    pub store_timeout: Duration,
    /// How long a negotiated connection may wait for the MTA's next message.
    pub idle_timeout: Duration,
    pub all_opted_out: AllOptedOut,
    pub max_connections: usize,
    /// The mode and group of a `unix:` socket.
    pub socket_permissions: crate::socket::UnixPermissions,
}

/// The largest config file read: far more than any real one.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from, for messages.
    pub path: PathBuf,
    pub milter: MilterConfig,
    pub store_url: String,
    pub consent: ConsentPolicy,
    /// The erasure key's file (`[consent] erasure_key`); `None`: no erasure.
    pub erasure_key: Option<PathBuf>,
    /// How phone numbers (channel `sms`) are read.
    pub phones: crate::consent::PhonePolicy,
    pub addresses: AddressPolicy,
    pub classifier: Classifier,
    /// `None`: no unsubscribe headers are added.
    pub unsubscribe: Option<UnsubscribeConfig>,
    /// `None`: no web front.
    pub web: Option<WebConfig>,
    /// `None`: unsubscribe mails are not taken.
    pub intake: Option<IntakeConfig>,
    /// Where `GET /metrics` listens; `None`: no metrics listener.
    pub metrics: Option<std::net::SocketAddr>,
    /// `None`: no admin API.
    pub api: Option<ApiConfig>,
    pub webhooks: Vec<WebhookConfig>,
    /// `None`: no SMS provider posts keywords here.
    pub sms: Option<SmsConfig>,
}

/// Values from the command line that take precedence over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub store_url: Option<String>,
    pub socket: Option<String>,
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is larger than {MAX_CONFIG_BYTES} bytes; is it the right file?")]
    TooLarge { path: PathBuf },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Combinations that are valid but cannot do what a postmaster expects: each one a
    /// sentence that names the keys. `check-config` prints them and `serve` logs them.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let list_level = self
            .unsubscribe
            .as_ref()
            .is_some_and(|u| u.multiple_recipients == MultipleRecipients::ListLevel);
        match (&self.unsubscribe, &self.intake) {
            (Some(_), None) => warnings.push(
                "[unsubscribe] mailto: no [intake] section, so mail to the unsubscribe address \
                 is never read and unsubscribes nobody"
                    .to_owned(),
            ),
            (Some(_), Some(intake))
                if intake.trusted_authserv_ids.is_empty() && intake.confirmation.is_none() =>
            {
                warnings.push(format!(
                    "[intake]: without trusted_authserv_ids or [intake.confirmation], an \
                     unsubscribe mail without a token is ignored{}; set \
                     [intake.confirmation] so its sender gets a link to confirm",
                    if list_level {
                        " (that is every mail to the list-level mailto which \
                         multiple_recipients = \"list-level\" adds)"
                    } else {
                        ""
                    }
                ));
            }
            _ => {}
        }
        warnings
    }

    /// Reads, overrides and validates the config at `path`.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        use std::io::Read;
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        // Bounded: `--config /dev/zero` (or a log file named by mistake) must not read
        // until memory runs out.
        let mut text = String::new();
        fs::File::open(path)
            .map_err(read_error)?
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        Self::parse(path, &text, overrides)
    }

    /// Validates config `text`, said to come from `path`.
    pub fn parse(path: &Path, text: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        if let Some(url) = &overrides.store_url {
            file.store.url = url.clone();
        }
        if let Some(socket) = &overrides.socket {
            file.milter.socket = socket.clone();
        }
        Self::from_file(path, file)
    }

    fn from_file(path: &Path, file: ConfigFile) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: &dyn fmt::Display| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.to_string(),
        };
        let m = &file.milter;
        let socket = m.socket.parse().map_err(|e| invalid("milter.socket", &e))?;
        let on_store_error = match m.on_store_error.as_str() {
            "tempfail" => OnStoreError::Tempfail,
            "accept" => OnStoreError::Accept,
            other => {
                return Err(invalid(
                    "milter.on_store_error",
                    &expected(other, "tempfail or accept"),
                ));
            }
        };
        let store_timeout = humantime::parse_duration(&m.store_timeout)
            .map_err(|e| invalid("milter.store_timeout", &e))?;
        if store_timeout.is_zero() {
            return Err(invalid("milter.store_timeout", &"must be longer than zero"));
        }
        let idle_timeout = humantime::parse_duration(&m.idle_timeout)
            .map_err(|e| invalid("milter.idle_timeout", &e))?;
        if idle_timeout < Duration::from_secs(60) {
            return Err(invalid(
                "milter.idle_timeout",
                &"must be at least 60s: an MTA keeps the connection for its whole SMTP session",
            ));
        }
        let all_opted_out = match m.all_opted_out.as_str() {
            "reject" => AllOptedOut::Reject,
            "discard" => AllOptedOut::Discard,
            other => {
                return Err(invalid(
                    "milter.all_opted_out",
                    &expected(other, "reject or discard"),
                ));
            }
        };
        if m.max_connections == 0 {
            return Err(invalid("milter.max_connections", &"must be at least 1"));
        }
        let socket_permissions = sections::permissions(
            &m.socket_mode,
            m.socket_group.as_deref(),
            "milter.socket",
            &invalid,
        )?;
        if !file.store.url.contains(':') {
            return Err(invalid(
                "store.url",
                &"expected a URL such as sqlite:///var/lib/optout-milter/consent.db",
            ));
        }
        let default = match file.consent.default.as_str() {
            "y" => DefaultConsent::Yes,
            "n" => DefaultConsent::No,
            other => return Err(invalid("consent.default", &expected(other, "y or n"))),
        };
        let separator = &file.addresses.subaddress_separator;
        let subaddress_separator = match separator.chars().collect::<Vec<_>>()[..] {
            [] => None,
            [c] if !c.is_alphanumeric() && c != '@' && !c.is_whitespace() => Some(c),
            _ => {
                return Err(invalid(
                    "addresses.subaddress_separator",
                    &expected(separator, "one character such as + or -, or empty"),
                ));
            }
        };
        let header = &file.classify.list_header;
        if header.is_empty() || !header.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(invalid(
                "classify.list_header",
                &expected(header, "a header field name"),
            ));
        }
        let sender_rules = file
            .classify
            .senders
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let key = |field| format!("classify.senders[{i}].{field}");
                Ok(SenderRule {
                    pattern: SenderPattern::parse(&rule.sender)
                        .map_err(|e| invalid(&key("sender"), &e))?,
                    list: rule
                        .list
                        .parse::<Scope>()
                        .map_err(|e| invalid(&key("list"), &e))?,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let unsubscribe = file
            .unsubscribe
            .as_ref()
            .map(|u| unsubscribe(u, &invalid))
            .transpose()?;
        let web = file
            .web
            .as_ref()
            .map(|w| web(w, &invalid))
            .transpose()?
            .map(|w| WebConfig {
                consent_default: default,
                ..w
            });
        if web.is_some() && unsubscribe.is_none() {
            return Err(invalid(
                "web",
                &"needs an [unsubscribe] section: the pages honour its tokens",
            ));
        }
        let intake = file
            .intake
            .as_ref()
            .map(|i| intake(i, &invalid))
            .transpose()?;
        if intake.is_some() && unsubscribe.is_none() {
            return Err(invalid(
                "intake",
                &"needs an [unsubscribe] section: it names the mailto address and the token keys",
            ));
        }
        let mut intake = intake;
        if let Some(c) = &file.complaints {
            let complaints = sections::complaints(c, &invalid)?;
            if let Some(u) = &unsubscribe
                && crate::intake::parse::is_unsubscribe_address(
                    &complaints.address,
                    &u.links.mailto_local,
                    &u.links.mailto_domain,
                )
            {
                return Err(invalid(
                    "complaints.address",
                    &"is the unsubscribe address of [unsubscribe] mailto: give feedback \
                      loops an address of their own",
                ));
            }
            match &mut intake {
                Some(intake) => intake.complaints = Some(complaints),
                None => {
                    return Err(invalid(
                        "complaints",
                        &"needs an [intake] section: it says how reports come in (milter, LMTP) \
                          and which Authentication-Results to trust",
                    ));
                }
            }
        }
        let metrics = file
            .metrics
            .as_ref()
            .map(|m| {
                m.listen
                    .parse()
                    .map_err(|e| invalid("metrics.listen", &format!("{:?}: {e}", m.listen)))
            })
            .transpose()?;
        let api = file
            .api
            .as_ref()
            .map(|a| sections::api(a, &invalid))
            .transpose()?;
        let webhooks = sections::webhooks(&file.webhooks, &invalid)?;
        let gateway_domains = file
            .sms
            .as_ref()
            .map_or(&[][..], |s| &s.gateway_domains[..])
            .iter()
            .enumerate()
            .map(|(i, d)| {
                idna::domain_to_ascii(d.trim())
                    .ok()
                    .filter(|d| d.contains('.'))
                    .ok_or_else(|| {
                        invalid(
                            &format!("sms.gateway_domains[{i}]"),
                            &sections::expected(d, "a domain name such as sms.example.com"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let default_region = match file.sms.as_ref().and_then(|s| s.default_region.as_deref()) {
            None => None,
            Some(code) => Some(crate::consent::PhonePolicy::region(code).ok_or_else(|| {
                invalid(
                    "sms.default_region",
                    &sections::expected(code, "a region code such as FR, US or GB"),
                )
            })?),
        };
        let phones = crate::consent::PhonePolicy {
            default_region,
            gateway_domains,
        };
        let sms = file
            .sms
            .as_ref()
            .map(|s| sms::sms(s, &phones, &invalid))
            .transpose()?
            .flatten();
        if sms.is_some() && web.is_none() {
            return Err(invalid(
                "sms",
                &"has providers but there is no [web] section: the web front receives their messages",
            ));
        }
        Ok(Self {
            api,
            webhooks,
            metrics,
            sms,
            path: path.to_owned(),
            milter: MilterConfig {
                socket,
                on_store_error,
                store_timeout,
                idle_timeout,
                all_opted_out,
                max_connections: m.max_connections,
                socket_permissions,
            },
            store_url: file.store.url,
            consent: ConsentPolicy { default },
            erasure_key: file.consent.erasure_key.as_ref().map(PathBuf::from),
            phones,
            addresses: AddressPolicy {
                local_part_case_sensitive: file.addresses.local_part_case_sensitive,
                subaddress_separator,
            },
            classifier: Classifier {
                sender_rules,
                list_header: header.clone(),
            },
            unsubscribe,
            web,
            intake,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text, &Overrides::default())
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/optout-milter.toml");
        let config = Config::load(&path, &Overrides::default()).unwrap();
        assert!(!config.classifier.sender_rules.is_empty());
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.milter.socket.to_string(), "inet:127.0.0.1:8899");
        assert_eq!(c.milter.on_store_error, OnStoreError::Tempfail);
        assert_eq!(c.milter.idle_timeout, Duration::from_secs(330));
        // Sendmail waits an hour for a slow SMTP client; the milter must wait as long.
        let sendmail = parse("[milter]\nidle_timeout = \"3660s\"").unwrap();
        assert_eq!(sendmail.milter.idle_timeout, Duration::from_secs(3660));
        assert_eq!(c.consent.default, DefaultConsent::Yes);
        assert_eq!(c.classifier.list_header, "X-Optout-List");
        assert_eq!(c.addresses, AddressPolicy::default());
    }

    #[test]
    fn the_api_section_is_validated_key_by_key() {
        let api = |rest: &str| {
            parse(&format!(
                "[api]\n{rest}\n[[api.tokens]]\nfile = \"/t/crm.token\"\nrights = \"read-write\"\n"
            ))
        };
        let c = api("").unwrap().api.unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8026");
        assert_eq!(c.tokens[0].name, "crm");
        assert_eq!(c.tokens[0].rights, ApiRights::ReadWrite);
        for (rest, key) in [
            ("listen = \"everywhere\"", "api.listen"),
            ("tls_cert = \"/c.pem\"", "api.tls_key"),
            ("max_connections = 0", "api.max_connections"),
            (
                "[[api.tokens]]\nfile = \"/u/crm.token\"\nrights = \"read\"",
                "api.tokens[1].name",
            ),
            (
                "[[api.tokens]]\nfile = \"/u/x\"\nrights = \"all\"",
                "api.tokens[0].rights",
            ),
        ] {
            let e = api(rest).unwrap_err().to_string();
            assert!(e.contains(key), "{rest}: {e}");
        }
        let none = parse("[api]\ntokens = []\n").unwrap_err().to_string();
        assert!(none.contains("api.tokens"), "{none}");
    }

    #[test]
    fn webhooks_are_validated_key_by_key() {
        let hook = |url: &str, rest: &str| {
            format!("[[webhooks]]\nurl = \"{url}\"\nsecret_file = \"/s\"\n{rest}\n")
        };
        let c = parse(
            &(hook("https://crm.example.com/h", "")
                + &hook("http://127.0.0.1:9/h", "name = \"local\"")),
        )
        .unwrap();
        assert_eq!(c.webhooks[0].name, "crm.example.com");
        assert_eq!(c.webhooks[0].retry_for, Duration::from_secs(3 * 86_400));
        assert_eq!(c.webhooks[1].name, "local");
        for (text, key) in [
            (hook("http://crm.example.com/h", ""), "webhooks[0].url"),
            (hook("ftp://crm.example.com/h", ""), "webhooks[0].url"),
            (hook("not a url", ""), "webhooks[0].url"),
            (
                hook("https://a.example/h", "retry_for = \"ever\""),
                "webhooks[0].retry_for",
            ),
            (
                hook("https://a.example/h", "timeout = \"0s\""),
                "webhooks[0].timeout",
            ),
            (
                hook("https://a.example/h", "") + &hook("https://a.example/g", ""),
                "webhooks[1].name",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn the_sms_region_is_a_region_code() {
        let c = parse("[sms]\ndefault_region = \"fr\"\n").unwrap();
        assert_eq!(
            c.phones.normalize("06 12 34 56 78").unwrap().as_str(),
            "+33612345678"
        );
        let e = parse("[sms]\ndefault_region = \"France\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sms.default_region"), "{e}");
        assert!(parse("").unwrap().phones.default_region.is_none());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = parse("[milter]\nsockett = \"inet:1@localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sockett"), "{e}");
        assert!(e.starts_with("test.toml: "), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[milter]\nsocket = \"tcp:1\"", "milter.socket"),
            (
                "[milter]\non_store_error = \"maybe\"",
                "milter.on_store_error",
            ),
            ("[milter]\nstore_timeout = \"soon\"", "milter.store_timeout"),
            ("[milter]\nidle_timeout = \"10s\"", "milter.idle_timeout"),
            ("[milter]\nidle_timeout = \"later\"", "milter.idle_timeout"),
            ("[consent]\ndefault = \"yes\"", "consent.default"),
            (
                "[addresses]\nsubaddress_separator = \"++\"",
                "addresses.subaddress_separator",
            ),
            (
                "[[classify.senders]]\nsender = \"@x\"",
                "classify.senders[0].sender",
            ),
            (
                "[[classify.senders]]\nsender = \"x.com\"\nlist = \"a b\"",
                "classify.senders[0].list",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(&format!("test.toml: {key}: ")), "{text}: {e}");
        }
    }

    #[test]
    fn unsubscribe_settings_are_checked() {
        let section = |extra: &str| {
            format!(
                "[unsubscribe]\nhttps_base = \"https://u.example.com\"\nmailto = \"unsub@example.com\"\n{extra}\n\
                 [[unsubscribe.keys]]\nid = 1\nfile = \"k\"\n"
            )
        };
        let ok = parse(&section("")).unwrap().unsubscribe.unwrap();
        assert_eq!(ok.multiple_recipients, MultipleRecipients::ListLevel);
        assert_eq!(ok.existing_header, ExistingHeader::Replace);
        assert_eq!(ok.token_lifetime, Duration::from_secs(60 * 86_400));
        for (text, key) in [
            (
                section("").replace("https://u", "http://u"),
                "unsubscribe.https_base",
            ),
            (
                section("").replace("unsub@", &format!("{}@", "u".repeat(30))),
                "unsubscribe.mailto",
            ),
            (
                section("").replace("unsub@", "un+sub@"),
                "unsubscribe.mailto",
            ),
            (
                section("token_lifetime = \"7d\""),
                "unsubscribe.token_lifetime",
            ),
            (
                section("multiple_recipients = \"all\""),
                "unsubscribe.multiple_recipients",
            ),
            (
                section("existing_header = \"merge\""),
                "unsubscribe.existing_header",
            ),
            (
                section("") + "[intake]\nlmtp = \"lmtp:24\"\n",
                "intake.lmtp",
            ),
            (
                section("") + "[complaints]\naddress = \"fbl@example.com\"\n",
                "complaints",
            ),
            (
                section("") + "[intake]\n[complaints]\naddress = \"fbl\"\n",
                "complaints.address",
            ),
            (
                section("") + "[intake]\n[complaints]\naddress = \"Unsub+fbl@example.com\"\n",
                "complaints.address",
            ),
            (
                section("")
                    + "[intake]\n[complaints]\naddress = \"fbl@example.com\"\nscope = \"some\"\n",
                "complaints.scope",
            ),
            (
                section("")
                    + "[intake]\n[complaints]\naddress = \"fbl@example.com\"\nauthenticated_senders = [\"x@y\"]\n",
                "complaints.authenticated_senders",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(&format!("test.toml: {key}: ")), "{text}: {e}");
        }
        assert!(parse("[unsubscribe]\nhttps_base = \"https://u.example.com\"\nmailto = \"u@example.com\"\nkeys = []\n").is_err());
    }

    #[test]
    fn command_line_overrides_win() {
        let overrides = Overrides {
            store_url: Some("sqlite:other.db".into()),
            socket: Some("unix:/tmp/x.sock".into()),
        };
        let c =
            Config::parse(Path::new("t"), "[store]\nurl = \"sqlite:a.db\"", &overrides).unwrap();
        assert_eq!(c.store_url, "sqlite:other.db");
        assert_eq!(c.milter.socket.to_string(), "unix:/tmp/x.sock");
    }
}
