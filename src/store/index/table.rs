//! The table behind the index: every consent value as a 128-bit fingerprint, 16 bytes per
//! record, in one sorted array.
//!
//! A fingerprint is SipHash-1-3 (128-bit output) of the record's key under a key drawn at
//! start, with its low four bits replaced by the value. A hash table of the same entries
//! would spend 19 to 39 bytes on each and touch all of its buckets; the sorted array
//! spends exactly 16, and a bisection over ten million of them is 24 steps. The 124 bits
//! that identify a key make a collision among ten million records less likely than one in
//! 10^22, and the random hash key means nobody can choose addresses that collide.
//!
//! A bisection over that array would touch a new cache line at nearly every step, and
//! profiling showed it as the milter's busiest function at a million records. The
//! fingerprints are uniformly distributed, so a directory indexed by their top bits
//! (one 4-byte offset per two entries) leads straight to a run of two or so entries:
//! two cache lines per lookup, at 18 bytes per record in all.
//!
//! Records that were not in the array when it was built go to a small hash table first;
//! when that grows past a sixteenth of the array it is merged into the array in place, from
//! the back, so the merge needs no second copy of the array.

use crate::consent::{Channel, ConsentValue, Scope};
use siphasher::sip128::{Hasher128, SipHasher13};
use std::{collections::HashMap, hash::Hasher};

/// The low bits of an entry, which carry the value.
const VALUE_BITS: u128 = 0xF;
/// The fewest recent entries that trigger a merge.
const MERGE_MIN: usize = 1 << 16;

/// How keys become fingerprints: SipHash-1-3 under a per-process key.
#[derive(Clone)]
pub struct Fingerprinter {
    keys: (u64, u64),
}

impl Fingerprinter {
    /// A fingerprinter with a fresh random key.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // Without an operating system random source nothing else here works either; a
        // fixed key still gives correct answers, only predictable fingerprints.
        if getrandom::fill(&mut bytes).is_err() {
            bytes = *b"optout-milter-ix";
        }
        let (a, b) = bytes.split_at(8);
        Self {
            keys: (
                u64::from_le_bytes(a.try_into().unwrap_or_default()),
                u64::from_le_bytes(b.try_into().unwrap_or_default()),
            ),
        }
    }

    /// The fingerprint of a key, with the value bits zero.
    pub fn of(&self, address: &str, channel: Channel, scope: &Scope) -> u128 {
        let mut hasher = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        // Lengths first, so that no two different keys hash the same bytes.
        hasher.write_usize(address.len());
        hasher.write(address.as_bytes());
        hasher.write_u8(channel as u8);
        hasher.write(scope.as_str().as_bytes());
        u128::from(hasher.finish128()) & !VALUE_BITS
    }
}

/// Fingerprints and values.
#[derive(Default)]
pub struct Table {
    /// Fingerprint | value code, sorted.
    sorted: Vec<u128>,
    /// `directory[b]..directory[b + 1]` is the run of `sorted` whose top `bits` bits are
    /// `b`.
    directory: Vec<u32>,
    bits: u32,
    /// Fingerprint -> value code for keys not in `sorted`.
    recent: HashMap<u128, u8>,
}

impl Table {
    /// A table of `entries` made with [`entry`](Self::entry), one per key (as the
    /// current state of a store has).
    pub fn build(mut entries: Vec<u128>) -> Self {
        entries.sort_unstable();
        entries.dedup_by(|a, b| *a & !VALUE_BITS == *b & !VALUE_BITS);
        entries.shrink_to_fit();
        let mut table = Self {
            sorted: entries,
            ..Self::default()
        };
        table.index();
        table
    }

    /// Rebuilds the directory over `sorted`.
    fn index(&mut self) {
        let n = self.sorted.len();
        assert!(u32::try_from(n).is_ok(), "at most 4 G records");
        // About two entries per run.
        self.bits = n.checked_ilog2().unwrap_or(0).saturating_sub(1);
        let runs = 1usize << self.bits;
        self.directory.clear();
        self.directory.reserve_exact(runs + 1);
        let mut at = 0;
        for run in 0..runs {
            self.directory.push(at as u32);
            while at < n && self.run_of(self.sorted[at]) == run {
                at += 1;
            }
        }
        self.directory.push(n as u32);
    }

    fn run_of(&self, fingerprint: u128) -> usize {
        match self.bits {
            0 => 0,
            bits => (fingerprint >> (128 - bits)) as usize,
        }
    }

    /// Where `fingerprint` is or would go in `sorted`.
    fn position(&self, fingerprint: u128) -> usize {
        let run = self.run_of(fingerprint);
        let (Some(&start), Some(&end)) = (self.directory.get(run), self.directory.get(run + 1))
        else {
            return self.sorted.partition_point(|&e| e < fingerprint);
        };
        let (start, end) = (start as usize, end as usize);
        start + self.sorted[start..end].partition_point(|&e| e < fingerprint)
    }

    /// An entry for [`build`](Self::build).
    pub fn entry(fingerprint: u128, value: ConsentValue) -> u128 {
        fingerprint | u128::from(code(value))
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// The value recorded under `fingerprint`.
    pub fn get(&self, fingerprint: u128) -> Option<ConsentValue> {
        if let Some(&code) = self.recent.get(&fingerprint) {
            return value(code);
        }
        match self.sorted.get(self.position(fingerprint)) {
            Some(&e) if e & !VALUE_BITS == fingerprint => value((e & VALUE_BITS) as u8),
            _ => None,
        }
    }

    /// Records `value` under `fingerprint`.
    pub fn set(&mut self, fingerprint: u128, value: ConsentValue) {
        let at = self.position(fingerprint);
        if let Some(e) = self.sorted.get_mut(at)
            && *e & !VALUE_BITS == fingerprint
        {
            *e = Self::entry(fingerprint, value);
            return;
        }
        self.recent.insert(fingerprint, code(value));
        if self.recent.len() >= MERGE_MIN.max(self.sorted.len() / 16) {
            self.merge();
        }
    }

    /// Moves the recent entries into the sorted array, in place.
    fn merge(&mut self) {
        let mut recent: Vec<u128> = self
            .recent
            .drain()
            .map(|(fingerprint, code)| fingerprint | u128::from(code))
            .collect();
        self.recent.shrink_to_fit();
        recent.sort_unstable();
        let old = self.sorted.len();
        self.sorted.reserve_exact(recent.len());
        self.sorted.resize(old + recent.len(), 0);
        // Merge from the back: every write lands on a slot already read or still empty.
        let (mut i, mut j, mut k) = (old, recent.len(), old + recent.len());
        while j > 0 {
            k -= 1;
            if i > 0 && self.sorted[i - 1] > recent[j - 1] {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = recent[j - 1];
                j -= 1;
            }
        }
        self.index();
    }
}

/// Value codes start at 1, in the order of [`ConsentValue::ALL`].
fn code(value: ConsentValue) -> u8 {
    let at = ConsentValue::ALL.iter().position(|&v| v == value);
    at.map_or(0, |at| at as u8 + 1)
}

fn value(code: u8) -> Option<ConsentValue> {
    ConsentValue::ALL
        .get(usize::from(code).checked_sub(1)?)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        s.parse().unwrap()
    }

    #[test]
    fn every_value_round_trips_through_its_code() {
        assert!(ConsentValue::ALL.len() < 16);
        for v in ConsentValue::ALL {
            assert_eq!(value(code(v)), Some(v));
        }
    }

    #[test]
    fn fingerprints_tell_keys_apart_and_leave_the_value_bits_free() {
        let f = Fingerprinter::random();
        let a = f.of("a@example.org", Channel::Email, &Scope::All);
        assert_eq!(a & VALUE_BITS, 0);
        assert_eq!(a, f.of("a@example.org", Channel::Email, &Scope::All));
        assert_ne!(a, f.of("a@example.org", Channel::Sms, &Scope::All));
        assert_ne!(a, f.of("a@example.org", Channel::Email, &scope("weekly")));
        assert_ne!(a, f.of("b@example.org", Channel::Email, &Scope::All));
        // Another process draws another key.
        assert_ne!(
            a,
            Fingerprinter::random().of("a@example.org", Channel::Email, &Scope::All)
        );
    }

    #[test]
    fn built_tables_find_their_keys_and_nothing_else() {
        let f = Fingerprinter::random();
        let a = f.of("a@example.org", Channel::Email, &Scope::All);
        let b = f.of("b@example.org", Channel::Email, &scope("weekly"));
        let table = Table::build(vec![
            Table::entry(a, ConsentValue::No),
            Table::entry(b, ConsentValue::LegitimateInterest),
        ]);
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(a), Some(ConsentValue::No));
        assert_eq!(table.get(b), Some(ConsentValue::LegitimateInterest));
        assert_eq!(
            table.get(f.of("b@example.org", Channel::Email, &Scope::All)),
            None
        );
        assert_eq!(Table::default().get(a), None);
    }

    #[test]
    fn updates_and_new_keys_are_found_before_and_after_merges() {
        let f = Fingerprinter::random();
        let key = |i: usize| f.of(&format!("r{i}@example.org"), Channel::Email, &Scope::All);
        let mut expected: HashMap<usize, ConsentValue> =
            (0..1000).map(|i| (i, ConsentValue::No)).collect();
        let mut table = Table::build(
            expected
                .keys()
                .map(|&i| Table::entry(key(i), ConsentValue::No))
                .collect(),
        );
        // Enough new keys for several merges, and changes of old ones in between.
        let end = 1000 + 3 * MERGE_MIN;
        for i in 1000..end {
            table.set(key(i), ConsentValue::No);
            expected.insert(i, ConsentValue::No);
            if i % 7 == 0 {
                let old = (i / 7) % i;
                table.set(key(old), ConsentValue::Yes);
                expected.insert(old, ConsentValue::Yes);
            }
        }
        assert!(table.recent.len() < MERGE_MIN, "merged");
        assert!(table.sorted.is_sorted());
        assert_eq!(table.bits, table.sorted.len().ilog2() - 1);
        assert_eq!(table.len(), end);
        for (&i, &v) in &expected {
            assert_eq!(table.get(key(i)), Some(v), "r{i}");
        }
        assert_eq!(table.get(key(end)), None);
    }
}
