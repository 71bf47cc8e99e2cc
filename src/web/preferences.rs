//! What the preferences page shows and what its forms write: each list's state, the
//! changes a set of ticked lists asks for, and the undo of a change.
//!
//! Every change made from the pages carries an action id in its evidence
//! (`action=0123456789abcdef`), and the page after it posts that id back to undo it.
//! The undo reads the history: for each key the change wrote, the entry before it is
//! what the key goes back to, and a key that had no entry before (or whose entry before
//! was itself an emptying) goes back to no record, never to an explicit yes. A key
//! changed again since (by anyone) is left as it is now.

use super::WebState;
use crate::{
    consent::{
        Change, Channel, ConsentRecord, ConsentValue, DefaultConsent, Effect, Scope, Source,
    },
    store::StoreError,
    unsubscribe::Target,
};
use std::time::SystemTime;

pub use super::pages::ListView;

/// A new action id: 16 hex digits.
pub fn new_action() -> String {
    let mut bytes = [0u8; 8];
    // Without an OS random source the id is still unique enough within one address's
    // undo window: the time in nanoseconds.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (nanos as u64).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` is an action id.
pub fn is_action(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The lists the page offers (`[web.lists]`, and the token's list if it is not one of
/// them), by name, each with its state for the token's address; and whether the address
/// opted out of all marketing.
pub async fn view(state: &WebState, target: &Target) -> Result<(Vec<ListView>, bool), StoreError> {
    let records = state.store.records(&target.address).await?;
    let all_off = effect(&records, &Scope::All) == Some(Effect::Blocks);
    Ok((lists(state, target, &records, all_off), all_off))
}

/// What the value recorded for `scope` on email does, if there is one.
fn effect(records: &[ConsentRecord], scope: &Scope) -> Option<Effect> {
    records
        .iter()
        .find(|r| r.channel == Channel::Email && r.scope == *scope)
        .map(|r| r.value.effect())
}

/// The page's lists, subscribed or not by their own records (and the default), all
/// unsubscribed when `all_off`.
fn lists(
    state: &WebState,
    target: &Target,
    records: &[ConsentRecord],
    all_off: bool,
) -> Vec<ListView> {
    let mut scopes: Vec<&Scope> = state.config.list_names.keys().collect();
    if matches!(target.scope, Scope::List(_)) && !scopes.contains(&&target.scope) {
        scopes.push(&target.scope);
    }
    let mut lists: Vec<ListView> = scopes
        .into_iter()
        .map(|scope| ListView {
            id: scope.as_str().to_owned(),
            name: state
                .config
                .list_names
                .get(scope)
                .cloned()
                .unwrap_or_else(|| scope.as_str().to_owned()),
            subscribed: !all_off
                && match effect(records, scope) {
                    Some(Effect::Blocks) => false,
                    Some(Effect::Allows) => true,
                    Some(Effect::Neutral) | None => {
                        state.config.consent_default == DefaultConsent::Yes
                    }
                },
        })
        .collect();
    lists.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.id.cmp(&b.id))
    });
    lists
}

/// What a write does: values recorded, and keys whose record is removed.
#[derive(Debug, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub emptied: Vec<Change>,
}

/// The changes that make the page's lists what `ticked` says: `n` for a list shown
/// subscribed and not ticked, `y` for one shown unsubscribed and ticked; and when the
/// address had opted out of all marketing and ticks a list, that opt-out is removed (the
/// unticked lists get their own `n`), so that the lists ticked are the ones it gets.
pub async fn plan(
    state: &WebState,
    target: &Target,
    ticked: &[String],
    evidence: String,
) -> Result<Plan, StoreError> {
    let records = state.store.records(&target.address).await?;
    let all_off = effect(&records, &Scope::All) == Some(Effect::Blocks);
    let at = SystemTime::now();
    let change = |scope: Scope, value: ConsentValue| Change {
        scope,
        ..target.change(value, Source::Web, evidence.clone(), at)
    };
    let wants = |list: &ListView| ticked.contains(&list.id);
    let mut plan = Plan::default();
    // With the opt-out from all removed, each list is what its own record says.
    let resubscribe = all_off && lists(state, target, &records, false).iter().any(wants);
    if resubscribe {
        plan.emptied.push(change(Scope::All, ConsentValue::Unknown));
    }
    for list in lists(state, target, &records, all_off && !resubscribe) {
        let Ok(scope) = list.id.parse::<Scope>() else {
            continue;
        };
        match (list.subscribed, wants(&list)) {
            (true, false) => plan.changes.push(change(scope, ConsentValue::No)),
            (false, true) => plan.changes.push(change(scope, ConsentValue::Yes)),
            _ => {}
        }
    }
    Ok(plan)
}

/// The writes that undo the change `action` of `target`'s address, or `None` when there
/// is nothing to undo: no such change, or older than the undo window.
pub async fn undo_of(
    state: &WebState,
    target: &Target,
    action: &str,
    evidence: String,
) -> Result<Option<Plan>, StoreError> {
    let history = state.store.history(&target.address).await?;
    let marker = format!(" action={action} ");
    let now = SystemTime::now();
    let mine: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.change.source == Source::Web
                && e.change.evidence.contains(&marker)
                && !e.change.evidence.starts_with("undo ")
        })
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = mine.first() else {
        return Ok(None);
    };
    if now
        .duration_since(history[first].change.at)
        .unwrap_or_default()
        > state.config.undo_window
    {
        return Ok(None);
    }
    let current = state.store.records(&target.address).await?;
    let mut plan = Plan::default();
    let mut seen: Vec<(Channel, &Scope)> = Vec::new();
    for &i in mine.iter().rev() {
        let written = &history[i];
        let key = (written.change.channel, &written.change.scope);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let same_key = |e: &&crate::consent::HistoryEntry| {
            e.change.channel == key.0 && e.change.scope == *key.1
        };
        // Changed again since this action (its own entries aside): left alone.
        let now_value = current
            .iter()
            .find(|r| r.channel == key.0 && r.scope == *key.1)
            .map(|r| r.value);
        let wrote = (!written.emptied).then_some(written.change.value);
        if now_value != wrote {
            continue;
        }
        let first_of_key = mine
            .iter()
            .map(|&j| &history[j])
            .find(same_key)
            .map_or(i, |e| {
                history.iter().position(|h| h.id == e.id).unwrap_or(i)
            });
        let before = history[..first_of_key].iter().rev().find(same_key);
        let put_back = Change {
            channel: key.0,
            scope: key.1.clone(),
            ..target.change(
                before.map_or(ConsentValue::Unknown, |e| e.change.value),
                Source::Web,
                evidence.clone(),
                now,
            )
        };
        match before {
            Some(entry) if !entry.emptied => plan.changes.push(put_back),
            _ => plan.emptied.push(put_back),
        }
    }
    Ok((!plan.changes.is_empty() || !plan.emptied.is_empty()).then_some(plan))
}
