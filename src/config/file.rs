//! The config file as written: serde types with every key documented and defaulted.
//! Nothing here is trusted yet; [`super::Config::from_file`] validates it.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    pub milter: MilterSection,
    pub store: StoreSection,
    pub consent: ConsentSection,
    pub addresses: AddressesSection,
    pub classify: ClassifySection,
    pub unsubscribe: Option<UnsubscribeSection>,
    pub web: Option<WebSection>,
    pub intake: Option<IntakeSection>,
    pub complaints: Option<ComplaintsSection>,
    pub metrics: Option<MetricsSection>,
    pub api: Option<ApiSection>,
    pub webhooks: Vec<WebhookEntry>,
    pub sms: Option<SmsSection>,
}

/// `[sms]`: consent for text messages, keyed by phone number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSection {
    /// The region (ISO 3166 code such as `FR` or `US`) of numbers written without a
    /// country code; without it they are refused.
    pub default_region: Option<String>,
    /// Email-to-SMS gateway domains: mail to `NUMBER@domain` is a text message to NUMBER,
    /// refused like an opted-out address when the number opted out of SMS.
    #[serde(default)]
    pub gateway_domains: Vec<String>,
    /// The language of answers to keywords several languages share, such as STOP.
    #[serde(default = "sms_language")]
    pub language: String,
    /// The sender's numbers and short codes, each with the list id a STOP to it leaves;
    /// a number not listed is a list of its own (its digits).
    #[serde(default)]
    pub numbers: BTreeMap<String, String>,
    /// Keywords by language and kind (`opt_out`, `opt_out_all`, `opt_in`, `help`); a
    /// list given replaces that kind's defaults (English and French are built in).
    #[serde(default)]
    pub keywords: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Answers by language and kind; `{sender}` is `[web] sender_name`.
    #[serde(default)]
    pub replies: BTreeMap<String, BTreeMap<String, String>>,
    /// Inbound messages from Twilio.
    pub twilio: Option<TwilioSection>,
    /// Inbound messages from Vonage's Messages API.
    pub vonage: Option<VonageSection>,
    /// Inbound messages from any gateway, as JSON behind a shared secret.
    pub generic: Option<GenericSmsSection>,
}

fn sms_language() -> String {
    "en".into()
}

/// `[sms.twilio]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSection {
    /// A file holding the account's auth token (it signs every request).
    pub auth_token_file: String,
    /// The URL of `/sms/twilio` exactly as written in Twilio's console: the signature
    /// covers it.
    pub url: String,
}

/// `[sms.vonage]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageSection {
    /// A file holding the account's signature secret (it signs every request's JWT).
    pub signature_secret_file: String,
    /// The account's API key: when set, JWTs issued for another account are refused.
    pub api_key: Option<String>,
}

/// `[sms.generic]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSmsSection {
    /// A file holding the shared secret, sent as `Authorization: Bearer SECRET`.
    pub secret_file: String,
}

/// `[[webhooks]]`: a URL every change of consent is delivered to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEntry {
    /// Where events are POSTed: `https://` (or `http://` to a loopback address).
    pub url: String,
    /// A file holding the signing secret, `whsec_` and the base64 of 24 to 64 random
    /// bytes (the Standard Webhooks format).
    pub secret_file: String,
    /// Its name in logs, metrics and the delivery cursor (default: the URL's host).
    pub name: Option<String>,
    /// How long an event is retried before it is given up.
    #[serde(default = "retry_for")]
    pub retry_for: String,
    /// How long one delivery attempt may take.
    #[serde(default = "webhook_timeout")]
    pub timeout: String,
}

fn retry_for() -> String {
    "3d".into()
}

fn webhook_timeout() -> String {
    "10s".into()
}

/// `[api]`: the admin API for the systems around the MTA (the sending application, the
/// CRM), on a listener of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address and port, e.g. `127.0.0.1:8026`; loopback unless TLS and a firewall say
    /// otherwise.
    #[serde(default = "api_listen")]
    pub listen: String,
    /// PEM certificate chain; with `tls_key`, the API speaks HTTPS.
    pub tls_cert: Option<String>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<String>,
    /// The most connections open at once.
    #[serde(default = "api_max_connections")]
    pub max_connections: usize,
    /// The largest import body, in bytes.
    #[serde(default = "api_max_import_bytes")]
    pub max_import_bytes: usize,
    /// The bearer tokens that may call it: at least one.
    pub tokens: Vec<ApiTokenEntry>,
}

/// One bearer token of `[api]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenEntry {
    /// A file holding the token (one line, at least 32 characters), readable by the
    /// daemon and by nobody else but its group.
    pub file: String,
    /// `read` or `read-write`.
    pub rights: String,
    /// The name changes are recorded under (default: the file's name without extension).
    pub name: Option<String>,
}

fn api_listen() -> String {
    "127.0.0.1:8026".into()
}

fn api_max_connections() -> usize {
    64
}

fn api_max_import_bytes() -> usize {
    64 * 1024 * 1024
}

/// `[complaints]`: feedback-loop reports (ARF) from mailbox providers, taken the same
/// ways in as unsubscribe mails (`[intake]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplaintsSection {
    /// The address the feedback loops send reports to, e.g. `fbl@example.com`.
    pub address: String,
    /// What a complaint opts out of: `all` marketing, or only the reported message's
    /// `list`.
    #[serde(default = "all_marketing")]
    pub scope: String,
    /// Feedback-loop domains (their subdomains included) whose reports, when DKIM or
    /// DMARC passes for them in a trusted `Authentication-Results`, may name the
    /// recipient without a token.
    #[serde(default)]
    pub authenticated_senders: Vec<String>,
}

fn all_marketing() -> String {
    "all".into()
}

/// `[metrics]`: Prometheus metrics on a listener of their own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address and port of `GET /metrics`, e.g. `127.0.0.1:9187`.
    pub listen: String,
}

/// `[milter]`: how the MTA talks to us.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterSection {
    /// Listening socket, as Postfix or Sendmail writes it.
    pub socket: String,
    /// `tempfail` (answer 4.x.x so the MTA retries) or `accept` (fail open) when the store
    /// fails or is slower than `store_timeout`.
    pub on_store_error: String,
    /// Longest wait for one store operation, as a duration (`2s`, `500ms`).
    pub store_timeout: String,
    /// Longest wait for the MTA's next milter message on a negotiated connection, which
    /// lives as long as the SMTP session: at least the MTA's own wait for an SMTP client.
    pub idle_timeout: String,
    /// `reject` or `discard` a header-classified message when every recipient opted out.
    pub all_opted_out: String,
    /// Most MTA connections served at once.
    pub max_connections: usize,
    /// The mode of a `unix:` socket, in octal, whatever the umask.
    pub socket_mode: String,
    /// The group of a `unix:` socket (a name or a number), e.g. `postfix`; unset keeps the
    /// process's group.
    pub socket_group: Option<String>,
}

impl Default for MilterSection {
    fn default() -> Self {
        Self {
            socket: default_socket(),
            on_store_error: "tempfail".into(),
            store_timeout: "2s".into(),
            idle_timeout: "330s".into(),
            all_opted_out: "reject".into(),
            max_connections: 512,
            socket_mode: default_socket_mode(),
            socket_group: None,
        }
    }
}

fn default_socket_mode() -> String {
    "0660".into()
}

fn default_socket() -> String {
    "inet:127.0.0.1:8899".into()
}

/// `[store]`: where consent lives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Store URL: `sqlite:PATH`.
    pub url: String,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            url: "sqlite:///var/lib/optout-milter/consent.db".into(),
        }
    }
}

/// `[consent]`: the decision policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentSection {
    /// Consent assumed for an address with no deciding record: `y` or `n` (opt-in only).
    pub default: String,
    /// The key of erased addresses' pseudonyms (32 or more bytes, owner-only); without
    /// it, `consent erase` is refused.
    pub erasure_key: Option<String>,
}

impl Default for ConsentSection {
    fn default() -> Self {
        Self {
            default: "y".into(),
            erasure_key: None,
        }
    }
}

/// `[addresses]`: how addresses compare.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddressesSection {
    /// Compare local parts case-sensitively.
    pub local_part_case_sensitive: bool,
    /// One character that starts a subaddress (`+`), or empty for no folding.
    pub subaddress_separator: String,
}

/// `[classify]`: what is marketing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifySection {
    /// Header naming the list of a marketing message; removed before the message leaves.
    pub list_header: String,
    /// Sender rules, first match wins.
    pub senders: Vec<SenderRuleEntry>,
}

impl Default for ClassifySection {
    fn default() -> Self {
        Self {
            list_header: "X-Optout-List".into(),
            senders: Vec::new(),
        }
    }
}

/// One `[[classify.senders]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderRuleEntry {
    /// An address, a domain, or either with `*` wildcards.
    pub sender: String,
    /// The list id of this sender's mail, or `*` for marketing in general.
    #[serde(default = "all_lists")]
    pub list: String,
}

fn all_lists() -> String {
    "*".into()
}

/// `[unsubscribe]`: the headers given to marketing mail. Without it, none are added.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeSection {
    /// `https://host[/path]`; one-click links are `https_base/u/TOKEN`.
    pub https_base: String,
    /// The unsubscribe address; per-recipient links are `local+TOKEN@domain`.
    pub mailto: String,
    /// With several recipients left: `list-level`, `reject` or `skip`.
    #[serde(default = "list_level")]
    pub multiple_recipients: String,
    /// When the message already has `List-Unsubscribe`: `replace` or `keep`.
    #[serde(default = "replace")]
    pub existing_header: String,
    /// How long a token verifies (`60d`); an expired one still unsubscribes.
    #[serde(default = "token_lifetime")]
    pub token_lifetime: String,
    /// Create the first key file with random bytes when it does not exist.
    #[serde(default)]
    pub generate_missing_key: bool,
    /// Token keys; the first signs, all verify.
    pub keys: Vec<KeyEntry>,
}

fn list_level() -> String {
    "list-level".into()
}

fn replace() -> String {
    "replace".into()
}

fn token_lifetime() -> String {
    "60d".into()
}

/// One `[[unsubscribe.keys]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// 0 to 255; carried in every token so the right key verifies it.
    pub id: u8,
    /// A file of at least 32 random bytes, mode 0600.
    pub file: String,
}

/// `[web]`: the one-click endpoint and the recipients' landing page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// Address and port to listen on, e.g. `127.0.0.1:8080` or `[::]:443`.
    pub listen: String,
    /// PEM certificate chain; with `tls_key`, the server speaks HTTPS itself.
    pub tls_cert: Option<String>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<String>,
    /// Reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The sender's name, shown on the pages.
    #[serde(default = "sender_name")]
    pub sender_name: String,
    /// How long after unsubscribing the page's undo button works.
    #[serde(default = "undo_window")]
    pub undo_window: String,
    /// Page views and refused links per minute from one client network (an opt-out with a
    /// valid token is never limited); 0 turns the limit off.
    #[serde(default = "rate_limit")]
    pub rate_limit: u32,
    /// The most HTTP connections open at once; more wait in the kernel's backlog.
    #[serde(default = "web_max_connections")]
    pub max_connections: usize,
    /// Human names of lists, by list id: the lists the preferences page offers.
    #[serde(default)]
    pub lists: BTreeMap<String, String>,
    /// A folder of templates that replace the built-in ones by name (`base.html`,
    /// `preferences.html`, `done.html`, `undone.html`, `problem.html`, `style.css`,
    /// `messages.toml`).
    pub templates: Option<String>,
    /// The pages' branding.
    #[serde(default)]
    pub brand: BrandSection,
}

/// `[web.brand]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandSection {
    /// A PNG, SVG, JPEG or WebP file (at most 512 KiB) shown above every page.
    pub logo_file: Option<String>,
    /// The colour of buttons, links and ticks, as `#rgb` or `#rrggbb`.
    pub accent: Option<String>,
    /// Links in every page's footer (`https://` or `mailto:`).
    pub privacy_url: Option<String>,
    pub contact_url: Option<String>,
    /// A line of text in every page's footer (company name and postal address, say).
    pub footer: Option<String>,
}

fn sender_name() -> String {
    "our mailing lists".into()
}

fn undo_window() -> String {
    "30m".into()
}

fn rate_limit() -> u32 {
    60
}

fn web_max_connections() -> usize {
    256
}

/// `[intake]`: unsubscribe mails to the `mailto:` address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeSection {
    /// After processing, the milter `discard`s the mail or lets it go on (`deliver`).
    #[serde(default = "discard")]
    pub after: String,
    /// Whether the milter takes unsubscribe mails itself (else only `ingest` or LMTP do).
    #[serde(default = "yes")]
    pub milter: bool,
    /// Where `serve` takes unsubscribe mails over LMTP, as `unix:/PATH` or `inet:HOST:PORT`;
    /// no LMTP server without it.
    pub lmtp: Option<String>,
    /// Larger messages are not unsubscribe requests.
    #[serde(default = "max_bytes")]
    pub max_bytes: usize,
    /// The most LMTP connections open at once; more wait in the kernel's backlog.
    #[serde(default = "lmtp_max_connections")]
    pub max_connections: usize,
    /// The mode of a `unix:` LMTP socket, in octal, whatever the umask.
    #[serde(default = "default_socket_mode")]
    pub lmtp_socket_mode: String,
    /// The group of a `unix:` LMTP socket (a name or a number).
    #[serde(default)]
    pub lmtp_socket_group: Option<String>,
    /// authserv-ids whose `Authentication-Results` are believed.
    #[serde(default)]
    pub trusted_authserv_ids: Vec<String>,
    /// A confirmation mail to whoever was unsubscribed; off without this table.
    pub confirmation: Option<ConfirmationSection>,
}

fn discard() -> String {
    "discard".into()
}

fn yes() -> bool {
    true
}

fn lmtp_max_connections() -> usize {
    64
}

fn max_bytes() -> usize {
    256 * 1024
}

/// `[intake.confirmation]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmationSection {
    /// The SMTP relay, `host:port`.
    pub relay: String,
    /// The confirmation's From, e.g. `Example <no-reply@example.com>`.
    pub from: String,
    #[serde(default = "confirmation_subject")]
    pub subject: String,
    #[serde(default = "confirmation_text")]
    pub text: String,
    /// The subject of the mail that asks an unverified sender to confirm by link.
    #[serde(default = "request_subject")]
    pub request_subject: String,
    /// Its text; the link follows it on a line of its own.
    #[serde(default = "request_text")]
    pub request_text: String,
}

fn request_subject() -> String {
    "Please confirm your unsubscribe request".into()
}

fn request_text() -> String {
    "We received a request by mail to stop sending marketing mail to this address. It did \
     not come through a link of ours, so we ask first: to unsubscribe, open the link below \
     and press the button. If you did not ask, ignore this mail; nothing changes.\n"
        .into()
}

fn confirmation_subject() -> String {
    "You are unsubscribed".into()
}

fn confirmation_text() -> String {
    "We received your request and will no longer send you this mail.\n".into()
}
