//! The unsubscribe headers of RFC 2369 and RFC 8058, exactly as mailbox providers read them.
//!
//! The HTTPS URI comes first in `List-Unsubscribe`: Gmail uses the first URI it can, and
//! one-click (RFC 8058) needs HTTPS. The second line is folded with a newline and a space,
//! which is how a milter asks the MTA for a folded header (the MTA adds the CR).

use crate::consent::Scope;

pub const LIST_UNSUBSCRIBE: &str = "List-Unsubscribe";
pub const LIST_UNSUBSCRIBE_POST: &str = "List-Unsubscribe-Post";
/// The only value of `List-Unsubscribe-Post` that RFC 8058 defines.
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

/// Where unsubscribe links point: from `[unsubscribe]`, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Links {
    /// `https://host[:port][/path]`, without a trailing slash.
    pub https_base: String,
    /// The mailto local part before `+TOKEN`.
    pub mailto_local: String,
    /// The mailto domain, in ASCII.
    pub mailto_domain: String,
}

impl Links {
    /// The one-click URI for `token`.
    pub fn https_uri(&self, token: &str) -> String {
        format!("{}/u/{token}", self.https_base)
    }

    /// The unsubscribe address for `token`.
    pub fn mailto_address(&self, token: &str) -> String {
        format!("{}+{token}@{}", self.mailto_local, self.mailto_domain)
    }

    /// `List-Unsubscribe` for one recipient.
    pub fn per_recipient(&self, token: &str) -> String {
        format!(
            "<{}>,\n <mailto:{}?subject=unsubscribe>",
            self.https_uri(token),
            self.mailto_address(token)
        )
    }

    /// `List-Unsubscribe` for a message with several recipients: a mailto without a token,
    /// so the request must be authenticated by its sender; no one-click.
    pub fn list_level(&self, list: &Scope) -> String {
        let subject = match list {
            Scope::All => "unsubscribe".to_owned(),
            Scope::List(id) => format!("unsubscribe%20{id}"),
        };
        format!(
            "<mailto:{}@{}?subject={subject}>",
            self.mailto_local, self.mailto_domain
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Links {
        Links {
            https_base: "https://u.example.com".into(),
            mailto_local: "unsubscribe".into(),
            mailto_domain: "example.com".into(),
        }
    }

    #[test]
    fn per_recipient_header_is_https_first_and_folded() {
        assert_eq!(
            links().per_recipient("tok"),
            "<https://u.example.com/u/tok>,\n <mailto:unsubscribe+tok@example.com?subject=unsubscribe>"
        );
    }

    #[test]
    fn list_level_header_has_only_a_mailto() {
        assert_eq!(
            links().list_level(&Scope::List("weekly".into())),
            "<mailto:unsubscribe@example.com?subject=unsubscribe%20weekly>"
        );
        assert_eq!(
            links().list_level(&Scope::All),
            "<mailto:unsubscribe@example.com?subject=unsubscribe>"
        );
    }
}
