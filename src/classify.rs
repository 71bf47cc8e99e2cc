//! Is a message marketing, and for which list?
//!
//! Two kinds of rule, both from config: the envelope sender (an exact address, a domain, or
//! a pattern with `*`), known at MAIL FROM so recipients can be refused one by one at RCPT;
//! and a header that the sending application sets (`X-Optout-List: <list-id>` by default),
//! known only after the headers. Mail that matches neither is transactional: receipts and
//! password resets are never blocked and never given unsubscribe headers.

use crate::consent::{Address, Scope};

/// A sender rule's pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderPattern {
    /// `news@example.com`: this address only.
    Address(String),
    /// `example.com`: any sender at this domain (not its subdomains).
    Domain(String),
    /// `bounce-*@mail.example.com`, `*.example.com`: `*` stands for any run of characters.
    Glob {
        pattern: String,
        whole_address: bool,
    },
}

/// Why a sender pattern cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid sender pattern {0:?}: use an address, a domain, or either with * wildcards")]
pub struct PatternError(pub String);

impl SenderPattern {
    /// Parses a pattern, bringing its domain into the ASCII form addresses are stored in.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let s = s.trim();
        let bad = || PatternError(s.to_owned());
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = match s.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() => (Some(local.to_lowercase()), domain),
            Some(_) => return Err(bad()),
            None => (None, s),
        };
        let domain = ascii_domain_pattern(domain).ok_or_else(bad)?;
        let glob = local.as_deref().is_some_and(|l| l.contains('*')) || domain.contains('*');
        Ok(match (local, glob) {
            (Some(local), false) => Self::Address(format!("{local}@{domain}")),
            (None, false) => Self::Domain(domain),
            (Some(local), true) => Self::Glob {
                pattern: format!("{local}@{domain}"),
                whole_address: true,
            },
            (None, true) => Self::Glob {
                pattern: domain,
                whole_address: false,
            },
        })
    }

    /// Whether `sender` (normalized) matches. Local parts compare case-insensitively.
    pub fn matches(&self, sender: &Address) -> bool {
        let lower = sender.as_str().to_lowercase();
        match self {
            Self::Address(a) => *a == lower,
            Self::Domain(d) => sender.domain() == d,
            Self::Glob {
                pattern,
                whole_address: true,
            } => glob_match(pattern, &lower),
            Self::Glob {
                pattern,
                whole_address: false,
            } => glob_match(pattern, sender.domain()),
        }
    }
}

/// Each label of a domain pattern in IDNA ASCII form; `*` labels and `*` inside ASCII
/// labels are kept.
fn ascii_domain_pattern(domain: &str) -> Option<String> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() {
        return None;
    }
    let labels: Option<Vec<String>> = domain
        .split('.')
        .map(|label| match label.contains('*') || label.is_ascii() {
            true if !label.is_empty() => Some(label.to_ascii_lowercase()),
            true => None,
            false => idna::domain_to_ascii(label).ok(),
        })
        .collect();
    labels.map(|l| l.join("."))
}

/// `*` matches any run of characters (also none); everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ti = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One sender rule: mail from senders matching `pattern` is marketing of list `list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderRule {
    pub pattern: SenderPattern,
    pub list: Scope,
}

/// The classification rules, in config order; the first sender rule that matches wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classifier {
    pub sender_rules: Vec<SenderRule>,
    /// The header naming the list, compared case-insensitively.
    pub list_header: String,
}

impl Classifier {
    /// The list of mail from `sender`, if a sender rule makes it marketing.
    pub fn by_sender(&self, sender: &Address) -> Option<&Scope> {
        self.sender_rules
            .iter()
            .find(|rule| rule.pattern.matches(sender))
            .map(|rule| &rule.list)
    }

    /// Whether a header of this name names the list.
    pub fn is_list_header(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(&self.list_header)
    }

    /// The list named by the list header's value. An application that sets the header says
    /// the mail is marketing, so a value that is not a valid list id still counts as
    /// marketing, of all lists (`*`): only a global opt-out can block it.
    pub fn by_header(&self, value: &str) -> Result<Scope, Scope> {
        let value = value.trim();
        let value = value
            .strip_prefix('<')
            .and_then(|v| v.strip_suffix('>'))
            .unwrap_or(value);
        value.parse().map_err(|_| Scope::All)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::AddressPolicy;

    fn addr(s: &str) -> Address {
        AddressPolicy::default().normalize(s).unwrap()
    }

    #[test]
    fn patterns_match_as_documented() {
        let cases = [
            ("news@example.com", "News@Example.com", true),
            ("news@example.com", "other@example.com", false),
            ("example.com", "anyone@example.com", true),
            ("example.com", "anyone@mail.example.com", false),
            ("*.example.com", "anyone@mail.example.com", true),
            ("*.example.com", "anyone@example.com", false),
            (
                "bounce-*@mail.example.com",
                "bounce-123-abc@mail.example.com",
                true,
            ),
            (
                "bounce-*@mail.example.com",
                "bounce@mail.example.com",
                false,
            ),
            ("*@bücher.example", "kai@xn--bcher-kva.example", true),
            ("*news*@*", "weekly-news@anything.example", true),
        ];
        for (pattern, sender, expected) in cases {
            let p = SenderPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(&addr(sender)), expected, "{pattern} ~ {sender}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "@example.com", "a b@example.com", "news@"] {
            assert!(SenderPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn first_matching_sender_rule_wins_and_header_values_fall_back_to_all() {
        let c = Classifier {
            sender_rules: vec![
                SenderRule {
                    pattern: SenderPattern::parse("news@example.com").unwrap(),
                    list: "weekly".parse().unwrap(),
                },
                SenderRule {
                    pattern: SenderPattern::parse("example.com").unwrap(),
                    list: Scope::All,
                },
            ],
            list_header: "X-Optout-List".into(),
        };
        assert_eq!(
            c.by_sender(&addr("news@example.com")),
            Some(&Scope::List("weekly".into()))
        );
        assert_eq!(c.by_sender(&addr("shop@example.com")), Some(&Scope::All));
        assert_eq!(c.by_sender(&addr("shop@example.org")), None);
        assert!(c.is_list_header("x-optout-list"));
        assert_eq!(c.by_header(" Promo "), Ok(Scope::List("promo".into())));
        assert_eq!(
            c.by_header("<promo.example.com>"),
            Ok(Scope::List("promo.example.com".into()))
        );
        assert_eq!(c.by_header("not a list!"), Err(Scope::All));
    }
}
