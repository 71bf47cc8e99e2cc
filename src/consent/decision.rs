//! The sending decision: may a marketing message of a given list go to this address?
//!
//! The rule, in order:
//! 1. a recorded `n` or `dn` for the message's list or for `*` blocks;
//! 2. otherwise a recorded `y`, `dy` or legal basis for the list or for `*` allows;
//! 3. otherwise (no record, or only `p`/`u`) the configured default decides: `y` (an empty
//!    value counts as consent, the XDM default) allows, `n` (opt-in only) blocks.
//!
//! An opt-out always wins over an opt-in at another scope: a person who said no to all
//! marketing is not mailed because an old import said yes to one list.

use super::{Address, AddressPolicy, Channel, ConsentValue, Erasure, Scope, value::Effect};
use std::future::Future;

/// The default from config for addresses with no deciding record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DefaultConsent {
    /// No record counts as consent.
    #[default]
    Yes,
    /// Opt-in only: no record means no mail.
    No,
}

/// The decision policy; today only the default, a struct so that rules can grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConsentPolicy {
    pub default: DefaultConsent,
}

/// Why a recipient is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockReason {
    /// The address opted out with this value at this scope.
    OptedOut { scope: Scope, value: ConsentValue },
    /// Opt-in only, and nothing allows it.
    NoConsent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Block(BlockReason),
}

impl ConsentPolicy {
    /// Decides for a message of `list` to `address` on `channel`, with `values` asked for
    /// the records of the address, then of each of its aliases ([`Address::aliases`]: the
    /// MTA may deliver to either), then of their erasure pseudonyms when there is an
    /// erasure key, then (for an email-to-SMS gateway address) of the phone number `sms`
    /// on channel `sms`: the first that does not allow decides. The milter and the admin
    /// API's decision call both decide here, so they cannot disagree.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide_for<E, Fut>(
        &self,
        addresses: &AddressPolicy,
        erasure: Option<&Erasure>,
        address: &Address,
        channel: Channel,
        sms: Option<Address>,
        list: &Scope,
        mut values: impl FnMut(Address, Channel) -> Fut,
    ) -> Result<Decision, E>
    where
        Fut: Future<Output = Result<Vec<(Scope, ConsentValue)>, E>>,
    {
        let mut candidates: Vec<Address> = std::iter::once(address.clone())
            .chain(address.aliases(addresses))
            .collect();
        if let Some(erasure) = erasure {
            let pseudonyms: Vec<Address> =
                candidates.iter().map(|a| erasure.pseudonym(a)).collect();
            candidates.extend(pseudonyms);
        }
        let candidates = candidates
            .into_iter()
            .map(|a| (a, channel))
            .chain(sms.map(|number| (number, Channel::Sms)));
        for (candidate, channel) in candidates {
            let found = values(candidate, channel).await?;
            let decision = self.decide(list, found.iter().map(|(scope, value)| (scope, *value)));
            if decision != Decision::Allow {
                return Ok(decision);
            }
        }
        Ok(Decision::Allow)
    }

    /// Decides for a message of `list`, given the address's records as (scope, value) pairs.
    /// Records of other lists are ignored, so callers may pass everything they have.
    pub fn decide<'a>(
        &self,
        list: &Scope,
        records: impl IntoIterator<Item = (&'a Scope, ConsentValue)>,
    ) -> Decision {
        let mut allowed = false;
        for (scope, value) in records {
            if scope != list && *scope != Scope::All {
                continue;
            }
            match value.effect() {
                Effect::Blocks => {
                    return Decision::Block(BlockReason::OptedOut {
                        scope: scope.clone(),
                        value,
                    });
                }
                Effect::Allows => allowed = true,
                Effect::Neutral => {}
            }
        }
        match (allowed, self.default) {
            (true, _) | (false, DefaultConsent::Yes) => Decision::Allow,
            (false, DefaultConsent::No) => Decision::Block(BlockReason::NoConsent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsentValue::*;

    fn list(id: &str) -> Scope {
        Scope::List(id.into())
    }

    const OPT_IN: ConsentPolicy = ConsentPolicy {
        default: DefaultConsent::No,
    };

    #[test]
    fn no_record_follows_the_default() {
        let empty: [(&Scope, ConsentValue); 0] = [];
        assert_eq!(
            ConsentPolicy::default().decide(&list("news"), empty),
            Decision::Allow
        );
        assert_eq!(
            OPT_IN.decide(&list("news"), empty),
            Decision::Block(BlockReason::NoConsent)
        );
    }

    #[test]
    fn n_or_dn_for_the_list_or_for_all_blocks() {
        let news = list("news");
        for (scope, value) in [(&news, No), (&news, DefaultNo), (&Scope::All, No)] {
            assert_eq!(
                ConsentPolicy::default().decide(&news, [(scope, value)]),
                Decision::Block(BlockReason::OptedOut {
                    scope: scope.clone(),
                    value
                })
            );
        }
    }

    #[test]
    fn another_lists_opt_out_does_not_block() {
        let promo = list("promo");
        assert_eq!(
            ConsentPolicy::default().decide(&list("news"), [(&promo, No)]),
            Decision::Allow
        );
    }

    #[test]
    fn opt_out_wins_over_opt_in_at_another_scope() {
        let news = list("news");
        assert!(matches!(
            OPT_IN.decide(&news, [(&news, Yes), (&Scope::All, No)]),
            Decision::Block(_)
        ));
    }

    #[test]
    fn opt_in_only_allows_yes_and_legal_bases_but_not_pending() {
        let news = list("news");
        for value in [
            Yes,
            DefaultYes,
            LegitimateInterest,
            Contract,
            LegalObligation,
        ] {
            assert_eq!(
                OPT_IN.decide(&news, [(&Scope::All, value)]),
                Decision::Allow
            );
            assert_eq!(OPT_IN.decide(&news, [(&news, value)]), Decision::Allow);
        }
        for value in [Pending, Unknown] {
            assert!(matches!(
                OPT_IN.decide(&news, [(&news, value)]),
                Decision::Block(_)
            ));
            assert_eq!(
                ConsentPolicy::default().decide(&news, [(&news, value)]),
                Decision::Allow
            );
        }
    }
}
