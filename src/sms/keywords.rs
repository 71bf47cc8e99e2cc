//! SMS keywords: which words are STOP, START or HELP, in which language, and whether a
//! message is one of them.
//!
//! A message is a keyword only when it is the word alone: case, the spaces around it,
//! accents (`ARRÊT` is `ARRET`), punctuation and symbols before or after it (`Stop!`,
//! `"STOP."`) and repeated spaces inside it (`STOP  ALL`) do not matter; anything more
//! (`please stop texting me`) is a message, not a keyword. Carriers match the same way,
//! so what a person sees honoured by the carrier is honoured here.

use std::collections::BTreeMap;
use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

/// What a keyword asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// No more messages from the number written to (STOP).
    OptOut,
    /// No more marketing messages from any number (STOPALL).
    OptOutAll,
    /// Messages again (START).
    OptIn,
    /// What the program is and how to leave it (HELP); changes nothing.
    Help,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Self::OptOut, Self::OptOutAll, Self::OptIn, Self::Help];

    /// Its name in the config and in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptOut => "opt_out",
            Self::OptOutAll => "opt_out_all",
            Self::OptIn => "opt_in",
            Self::Help => "help",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The keywords of one language, as the config writes them.
pub type Words = BTreeMap<Kind, Vec<String>>;

/// The default keywords of `language` (`en` or `fr`): the CTIA's and the carriers' for
/// English, the French operators' STOP and ARRET (with AIDE for help).
pub fn defaults(language: &str) -> Option<Words> {
    let words = |list: &[&str]| list.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    match language {
        "en" => Some(BTreeMap::from([
            (
                Kind::OptOut,
                words(&[
                    "STOP",
                    "UNSUBSCRIBE",
                    "CANCEL",
                    "END",
                    "QUIT",
                    "REVOKE",
                    "OPTOUT",
                    "OPT OUT",
                    "OPT-OUT",
                ]),
            ),
            (Kind::OptOutAll, words(&["STOPALL", "STOP ALL"])),
            (Kind::OptIn, words(&["START", "UNSTOP", "YES"])),
            (Kind::Help, words(&["HELP", "INFO"])),
        ])),
        "fr" => Some(BTreeMap::from([
            (Kind::OptOut, words(&["STOP", "ARRET", "STOP SMS"])),
            (
                Kind::OptOutAll,
                words(&["STOPALL", "STOP ALL", "ARRET TOUT"]),
            ),
            (Kind::OptIn, words(&["START", "UNSTOP"])),
            (Kind::Help, words(&["AIDE", "HELP", "INFO"])),
        ])),
        _ => None,
    }
}

/// Two languages give one keyword different meanings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{word:?} is {first} in one language and {second} in another")]
pub struct Conflict {
    pub word: String,
    pub first: Kind,
    pub second: Kind,
}

/// Every keyword in force, by its normalized form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keywords {
    /// Normalized word → what it asks and the languages that have it, in config order.
    words: BTreeMap<String, (Kind, Vec<String>)>,
}

/// A message recognised as a keyword.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub kind: Kind,
    /// The keyword as normalized (`STOP ALL`), for the evidence.
    pub word: String,
    /// The language to answer in.
    pub language: String,
}

impl Keywords {
    /// The keywords of each language; a word may be in several languages, with one
    /// meaning.
    pub fn new<'a>(
        languages: impl IntoIterator<Item = (&'a str, &'a Words)>,
    ) -> Result<Self, Conflict> {
        let mut words: BTreeMap<String, (Kind, Vec<String>)> = BTreeMap::new();
        for (language, table) in languages {
            for (&kind, list) in table {
                for word in list {
                    let entry = words
                        .entry(normalize(word))
                        .or_insert_with(|| (kind, Vec::new()));
                    if entry.0 != kind {
                        return Err(Conflict {
                            word: word.clone(),
                            first: entry.0,
                            second: kind,
                        });
                    }
                    if !entry.1.iter().any(|l| l == language) {
                        entry.1.push(language.to_owned());
                    }
                }
            }
        }
        Ok(Self { words })
    }

    /// The keyword `text` is, if it is one; answered in `preferred` when the keyword is
    /// in that language (STOP is English and French), else in its first language.
    pub fn find(&self, text: &str, preferred: &str) -> Option<Match> {
        let word = normalize(text);
        let (kind, languages) = self.words.get(&word)?;
        let language = match languages.iter().any(|l| l == preferred) {
            true => preferred.to_owned(),
            false => languages.first()?.clone(),
        };
        Some(Match {
            kind: *kind,
            word,
            language,
        })
    }
}

/// `text` as keywords are compared: without accents or the punctuation and symbols around
/// it, its spaces collapsed, in upper case.
pub fn normalize(text: &str) -> String {
    let bare: String = text
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .collect::<String>()
        .to_uppercase();
    let trimmed = bare.trim_matches(|c: char| !c.is_alphanumeric());
    trimmed.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keywords() -> Keywords {
        let (en, fr) = (defaults("en").unwrap(), defaults("fr").unwrap());
        Keywords::new([("en", &en), ("fr", &fr)]).unwrap()
    }

    #[test]
    fn a_keyword_is_the_word_alone_in_any_case_spacing_accent_or_punctuation() {
        let k = keywords();
        for (text, kind, word) in [
            ("STOP", Kind::OptOut, "STOP"),
            ("stop", Kind::OptOut, "STOP"),
            ("  Stop \n", Kind::OptOut, "STOP"),
            ("Stop!", Kind::OptOut, "STOP"),
            ("STOP.", Kind::OptOut, "STOP"),
            ("\"stop\"", Kind::OptOut, "STOP"),
            ("stop!!! 🛑", Kind::OptOut, "STOP"),
            ("¡Stop!", Kind::OptOut, "STOP"),
            ("Arrêt", Kind::OptOut, "ARRET"),
            ("ARRÊT.", Kind::OptOut, "ARRET"),
            ("arret", Kind::OptOut, "ARRET"),
            ("ＳＴＯＰ", Kind::OptOut, "STOP"),
            ("stop all", Kind::OptOutAll, "STOP ALL"),
            ("STOP   ALL", Kind::OptOutAll, "STOP ALL"),
            ("Stopall", Kind::OptOutAll, "STOPALL"),
            ("unsubscribe", Kind::OptOut, "UNSUBSCRIBE"),
            ("Opt-out", Kind::OptOut, "OPT-OUT"),
            ("start", Kind::OptIn, "START"),
            ("Unstop", Kind::OptIn, "UNSTOP"),
            ("yes", Kind::OptIn, "YES"),
            ("help?", Kind::Help, "HELP"),
            ("Aide", Kind::Help, "AIDE"),
            ("info", Kind::Help, "INFO"),
        ] {
            let found = k
                .find(text, "en")
                .unwrap_or_else(|| panic!("{text:?} is a keyword"));
            assert_eq!((found.kind, found.word.as_str()), (kind, word), "{text:?}");
        }
    }

    #[test]
    fn sentences_that_merely_contain_a_keyword_are_not_keywords() {
        let k = keywords();
        for text in [
            "please stop",
            "stop texting me",
            "Don't stop",
            "STOP STOP",
            "S T O P",
            "STOPP",
            "stop, thanks",
            "",
            "   ",
            "!!!",
            "help me please",
            "arrêtez",
        ] {
            assert_eq!(k.find(text, "en"), None, "{text:?}");
        }
    }

    #[test]
    fn the_answer_is_in_the_keywords_language_or_the_preferred_one_when_shared() {
        let k = keywords();
        assert_eq!(k.find("ARRET", "en").unwrap().language, "fr");
        assert_eq!(k.find("AIDE", "en").unwrap().language, "fr");
        assert_eq!(k.find("UNSUBSCRIBE", "fr").unwrap().language, "en");
        assert_eq!(k.find("STOP", "fr").unwrap().language, "fr");
        assert_eq!(k.find("STOP", "en").unwrap().language, "en");
        // A preferred language without the word: the word's first language.
        assert_eq!(k.find("STOP", "de").unwrap().language, "en");
    }

    #[test]
    fn one_word_with_two_meanings_is_refused() {
        let en = BTreeMap::from([(Kind::OptOut, vec!["STOP".to_owned()])]);
        let xx = BTreeMap::from([(Kind::Help, vec!["stop".to_owned()])]);
        let error = Keywords::new([("en", &en), ("xx", &xx)]).unwrap_err();
        assert_eq!((error.first, error.second), (Kind::OptOut, Kind::Help));
    }
}
