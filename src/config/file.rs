//! The config file as written: serde types with every key documented and defaulted.
//! Nothing here is trusted yet; [`super::Config::from_file`] validates it.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    pub milter: MilterSection,
    pub store: StoreSection,
    pub consent: ConsentSection,
    pub addresses: AddressesSection,
    pub classify: ClassifySection,
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
    /// `reject` or `discard` a header-classified message when every recipient opted out.
    pub all_opted_out: String,
    /// Most MTA connections served at once.
    pub max_connections: usize,
}

impl Default for MilterSection {
    fn default() -> Self {
        Self {
            socket: default_socket(),
            on_store_error: "tempfail".into(),
            store_timeout: "2s".into(),
            all_opted_out: "reject".into(),
            max_connections: 512,
        }
    }
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
}

impl Default for ConsentSection {
    fn default() -> Self {
        Self {
            default: "y".into(),
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
