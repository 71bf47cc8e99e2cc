//! Validation of `[sms]`'s inbound side: keywords, answers, the sender's numbers and the
//! providers' credentials.

use super::{
    ConfigError, file,
    sections::{Invalid, expected},
};
use crate::{
    consent::{PhonePolicy, Scope},
    sms::{
        SmsPolicy, default_replies,
        keywords::{Keywords, Kind, Words, defaults},
        our_number,
    },
};
use std::{collections::BTreeMap, path::PathBuf};

/// `[sms]`'s inbound endpoints: what messages record and answer, and whose they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsConfig {
    pub policy: SmsPolicy,
    pub twilio: Option<TwilioConfig>,
    pub vonage: Option<VonageConfig>,
    /// The shared secret's file of the generic JSON endpoint.
    pub generic_secret_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwilioConfig {
    pub auth_token_file: PathBuf,
    /// The URL Twilio signs.
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VonageConfig {
    pub signature_secret_file: PathBuf,
    pub api_key: Option<String>,
}

fn kind(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == name)
}

const KINDS: &str = "opt_out, opt_out_all, opt_in or help";

/// `[sms]`'s inbound settings; `None` when no provider is configured.
pub(super) fn sms(
    s: &file::SmsSection,
    phones: &PhonePolicy,
    invalid: &Invalid,
) -> Result<Option<SmsConfig>, ConfigError> {
    let language = s.language.trim().to_ascii_lowercase();
    let valid_language =
        |l: &str| (2..=8).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase());
    if !valid_language(&language) {
        return Err(invalid(
            "sms.language",
            &expected(&s.language, "a language code such as en or fr"),
        ));
    }
    // The built-in languages, then those of the file; a kind given replaces its defaults.
    let mut words: BTreeMap<String, Words> = ["en", "fr"]
        .into_iter()
        .filter_map(|l| Some((l.to_owned(), defaults(l)?)))
        .collect();
    for (lang, kinds) in &s.keywords {
        if !valid_language(lang) {
            return Err(invalid(
                &format!("sms.keywords.{lang}"),
                &"is not a language code such as en or fr",
            ));
        }
        let table = words.entry(lang.clone()).or_default();
        for (name, list) in kinds {
            let key = format!("sms.keywords.{lang}.{name}");
            let k = kind(name).ok_or_else(|| invalid(&key, &expected(name, KINDS)))?;
            if let Some(word) = list
                .iter()
                .find(|w| crate::sms::keywords::normalize(w).is_empty())
            {
                return Err(invalid(&key, &expected(word, "words of letters or digits")));
            }
            table.insert(k, list.clone());
        }
    }
    let keywords = Keywords::new(words.iter().map(|(l, w)| (l.as_str(), w)))
        .map_err(|e| invalid("sms.keywords", &e))?;
    let mut replies: BTreeMap<String, crate::sms::Replies> = BTreeMap::new();
    for (lang, table) in &words {
        let mut answers = default_replies(lang).unwrap_or_default();
        if let Some(given) = s.replies.get(lang) {
            for (name, text) in given {
                let key = format!("sms.replies.{lang}.{name}");
                let k = kind(name).ok_or_else(|| invalid(&key, &expected(name, KINDS)))?;
                if text.trim().is_empty() {
                    return Err(invalid(&key, &"is empty: every keyword is answered"));
                }
                answers.insert(k, text.clone());
            }
        }
        if let Some(k) = table.keys().find(|k| !answers.contains_key(k)) {
            return Err(invalid(
                &format!("sms.replies.{lang}.{k}"),
                &format!("is needed: [sms.keywords.{lang}] has {k} keywords"),
            ));
        }
        replies.insert(lang.clone(), answers);
    }
    if let Some(lang) = s.replies.keys().find(|l| !words.contains_key(*l)) {
        return Err(invalid(
            &format!("sms.replies.{lang}"),
            &"has no keywords: add [sms.keywords.LANGUAGE]",
        ));
    }
    if !words.contains_key(&language) {
        return Err(invalid(
            "sms.language",
            &format!("{language:?} has no keywords: add [sms.keywords.{language}]"),
        ));
    }
    let mut numbers = BTreeMap::new();
    for (number, list) in &s.numbers {
        let key = format!("sms.numbers.{number:?}");
        let ours = our_number(phones, number).ok_or_else(|| {
            invalid(
                &key,
                &"is not a phone number (+CC…) or a short code (3 to 8 digits)",
            )
        })?;
        let scope = list.parse::<Scope>().map_err(|e| invalid(&key, &e))?;
        if numbers.insert(ours.clone(), scope).is_some() {
            return Err(invalid(&key, &format!("is {ours}, listed twice")));
        }
    }
    let twilio = s
        .twilio
        .as_ref()
        .map(|t| {
            let url = reqwest::Url::parse(&t.url)
                .ok()
                .filter(|u| u.scheme() == "https" || u.scheme() == "http")
                .ok_or_else(|| invalid("sms.twilio.url", &expected(&t.url, "the https:// URL of /sms/twilio as Twilio's console has it")))?;
            if url.query().is_some() {
                return Err(invalid("sms.twilio.url", &"has a query: give the URL without it (the request's own query is signed with it)"));
            }
            Ok(TwilioConfig {
                auth_token_file: PathBuf::from(&t.auth_token_file),
                url: t.url.trim().to_owned(),
            })
        })
        .transpose()?;
    let vonage = s.vonage.as_ref().map(|v| VonageConfig {
        signature_secret_file: PathBuf::from(&v.signature_secret_file),
        api_key: v.api_key.clone(),
    });
    let generic_secret_file = s.generic.as_ref().map(|g| PathBuf::from(&g.secret_file));
    if twilio.is_none() && vonage.is_none() && generic_secret_file.is_none() {
        return Ok(None);
    }
    Ok(Some(SmsConfig {
        policy: SmsPolicy {
            language,
            numbers,
            keywords,
            replies,
        },
        twilio,
        vonage,
        generic_secret_file,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Overrides};
    use crate::sms::keywords::Kind;
    use std::path::Path;

    const BASE: &str = "[unsubscribe]\nhttps_base = \"https://u.example.com\"\nmailto = \"unsub@example.com\"\n\
                        [[unsubscribe.keys]]\nid = 1\nfile = \"k\"\n[web]\nlisten = \"127.0.0.1:8080\"\n";

    fn parse(sms: &str) -> Result<Config, String> {
        Config::parse(
            Path::new("t.toml"),
            &format!("{BASE}{sms}"),
            &Overrides::default(),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn providers_numbers_keywords_and_replies_are_read() {
        let c = parse(
            "[sms]\nlanguage = \"fr\"\n[sms.numbers]\n\"+1 415 555 0199\" = \"News\"\n\"12345\" = \"alerts\"\n\
             [sms.twilio]\nauth_token_file = \"t\"\nurl = \"https://u.example.com/sms/twilio\"\n\
             [sms.keywords.de]\nopt_out = [\"STOPP\"]\nopt_out_all = [\"STOPP ALLE\"]\nopt_in = [\"START\"]\nhelp = [\"HILFE\"]\n\
             [sms.replies.de]\nopt_out = \"Abgemeldet.\"\nopt_out_all = \"Alle abgemeldet.\"\nopt_in = \"Angemeldet.\"\nhelp = \"Hilfe.\"\n\
             [sms.replies.en]\nhelp = \"{sender}: help text\"\n",
        )
        .unwrap();
        let sms = c.sms.unwrap();
        assert_eq!(sms.policy.language, "fr");
        assert_eq!(sms.policy.list_of("+14155550199").as_str(), "news");
        assert_eq!(sms.policy.list_of("12345").as_str(), "alerts");
        assert_eq!(sms.policy.list_of("+33612345678").as_str(), "33612345678");
        let stopp = sms.policy.keywords.find("stopp", "fr").unwrap();
        assert_eq!((stopp.kind, stopp.language.as_str()), (Kind::OptOut, "de"));
        assert_eq!(sms.policy.reply(&stopp, "Example"), "Abgemeldet.");
        let help = sms.policy.keywords.find("HELP", "en").unwrap();
        assert_eq!(sms.policy.reply(&help, "Example"), "Example: help text");
        assert!(sms.vonage.is_none() && sms.generic_secret_file.is_none());
        // Without a provider, [sms] has no inbound side.
        assert!(
            parse("[sms]\ndefault_region = \"FR\"\n")
                .unwrap()
                .sms
                .is_none()
        );
    }

    #[test]
    fn each_mistake_names_its_key() {
        let twilio =
            "[sms.twilio]\nauth_token_file = \"t\"\nurl = \"https://u.example.com/sms/twilio\"\n";
        for (text, key) in [
            (format!("[sms]\nlanguage = \"english!\"\n{twilio}"), "sms.language"),
            (format!("[sms]\nlanguage = \"de\"\n{twilio}"), "sms.language"),
            (format!("[sms]\n{twilio}[sms.keywords.en]\nstopp = [\"X\"]\n"), "sms.keywords.en.stopp"),
            (format!("[sms]\n{twilio}[sms.keywords.en]\nopt_out = [\"!!\"]\n"), "sms.keywords.en.opt_out"),
            (format!("[sms]\n{twilio}[sms.keywords.en]\nhelp = [\"STOP\"]\n"), "sms.keywords"),
            (format!("[sms]\n{twilio}[sms.keywords.de]\nhelp = [\"HILFE\"]\n"), "sms.replies.de.help"),
            (format!("[sms]\n{twilio}[sms.replies.en]\nhelp = \" \"\n"), "sms.replies.en.help"),
            (format!("[sms]\n{twilio}[sms.replies.de]\nhelp = \"Hilfe\"\n"), "sms.replies.de"),
            (format!("[sms]\n{twilio}[sms.numbers]\n\"hello\" = \"news\"\n"), "sms.numbers"),
            (format!("[sms]\n{twilio}[sms.numbers]\n\"+14155550199\" = \"a list!\"\n"), "sms.numbers"),
            (
                format!("[sms]\n{twilio}[sms.numbers]\n\"+14155550199\" = \"a\"\n\"14155550199\" = \"b\"\n"),
                "sms.numbers",
            ),
            (
                "[sms.twilio]\nauth_token_file = \"t\"\nurl = \"u.example.com/sms/twilio\"\n".into(),
                "sms.twilio.url",
            ),
            (
                "[sms.twilio]\nauth_token_file = \"t\"\nurl = \"https://u.example.com/sms/twilio?a=1\"\n".into(),
                "sms.twilio.url",
            ),
        ] {
            let error = parse(&text).unwrap_err();
            assert!(error.contains(key), "{text}\n{error}");
        }
        let without_web = Config::parse(
            Path::new("t.toml"),
            "[sms.generic]\nsecret_file = \"s\"\n",
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            without_web.contains("sms") && without_web.contains("[web]"),
            "{without_web}"
        );
    }
}
