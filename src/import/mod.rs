//! Reading lists of addresses that operators bring from elsewhere: one address per line,
//! the CSV exports of common ESPs (Mailchimp's `Email Address`, SendGrid's `email`,
//! Mailgun's `address`, listmonk's `email` with `status` ...), with `,`, `;` or tab between
//! fields, and this program's own `consent export`, which comes back whole.
//!
//! Every row ends up imported or reported, with its line number:
//! - The text may be UTF-8 (with or without the BOM Excel writes) or UTF-16 with a BOM
//!   (Excel's "Unicode text").
//! - A quoted field that runs over a line end is taken only in this program's own export
//!   format (its evidence may hold line breaks), over at most 50 lines; anywhere else it
//!   is an unbalanced quote, reported at its line, and reading resumes at the next line,
//!   so one stray `"` cannot swallow the rest of the file. Reading stays linear in the
//!   file's size whatever it holds (the fuzzer found a quadratic case in an earlier
//!   version).
//! - A `status` column (listmonk's `blocklisted`, Mailchimp's `unsubscribed` or `cleaned`)
//!   is honoured when importing opt-outs: rows whose status is not an opt-out are skipped
//!   and counted, never turned into opt-outs.

mod apply;

pub use apply::{ApplyError, BATCH, Request, Tally, apply};

use crate::consent::{Channel, ConsentValue, Scope, Source};
use std::{io::Read, time::SystemTime};

/// Header names that hold the address, after folding case and dropping spaces, `_` and `-`;
/// the earliest in this list wins when several are present.
const ADDRESS_COLUMNS: [&str; 6] = [
    "email",
    "emailaddress",
    "address",
    "mail",
    "recipient",
    "to",
];

/// Header names of a status column, folded like [`ADDRESS_COLUMNS`].
const STATUS_COLUMNS: [&str; 4] = ["status", "subscriptionstatus", "memberstatus", "state"];

/// Statuses that mean the address opted out (or must not be mailed), folded.
const OPT_OUT_STATUSES: [&str; 12] = [
    "unsubscribed",
    "unsubscribe",
    "blocklisted",
    "blacklisted",
    "blocked",
    "cleaned",
    "complained",
    "spamreport",
    "optedout",
    "optout",
    "suppressed",
    "bounced",
];

/// The columns of `consent export`, in order.
pub const EXPORT_COLUMNS: [&str; 7] = [
    "address",
    "channel",
    "scope",
    "value",
    "source",
    "updated_at",
    "evidence",
];

/// A record of `consent export`, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub address: String,
    pub channel: Channel,
    pub scope: Scope,
    pub value: ConsentValue,
    pub source: Source,
    pub at: SystemTime,
    pub evidence: String,
}

/// What one row asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// An address, to be given the value and scope the command names.
    Address(String),
    /// A whole record of a consent export.
    Record(Exported),
    /// Not imported, for this reason (a status that is not an opt-out).
    Skipped(String),
}

/// One row: its line number and what it asks for, or why it is bad.
pub type Row = (u64, Result<Item, String>);

/// What a file holds.
#[derive(Debug, Default)]
pub struct Table {
    pub rows: Vec<Row>,
    /// The file is a `consent export`: its rows carry their own values.
    pub exported: bool,
    /// Things the operator should know about how the file was read.
    pub notes: Vec<String>,
}

/// How rows are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The rows become opt-outs: a status column filters them.
    OptOuts,
    /// Any other value: a status column is ignored (and said to be).
    Other,
}

/// A file that cannot be read as a list at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the file")]
    Io(#[from] std::io::Error),
    #[error("the file is neither UTF-8 nor UTF-16 with a byte-order mark")]
    Encoding,
    #[error(
        "the header row {0:?} has no address column (expected one named like email, Email Address or address)"
    )]
    NoAddressColumn(String),
}

/// Reads every row of `input`.
pub fn read(mut input: impl Read, purpose: Purpose) -> Result<Table, ImportError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let text = decode(bytes)?;
    let Some((header_line, header_start, header_end)) = first_content_line(&text) else {
        return Ok(Table::default());
    };
    let first = &text[header_start..header_end];
    let delimiter = delimiter_of(first);
    let header = delimiter.map(|d| split_header(first, d));
    let address_column = header.as_ref().and_then(|h| find(h, &ADDRESS_COLUMNS));
    let (Some(delimiter), Some(header), Some(column)) = (delimiter, &header, address_column) else {
        if delimiter.is_some() && looks_like_header(first) {
            return Err(ImportError::NoAddressColumn(first.trim().to_owned()));
        }
        // A header of one column ("email") or none: a plain list.
        let skip_header = find(&[fold(first)], &ADDRESS_COLUMNS).is_some();
        return Ok(plain_list(&text, header_line, skip_header));
    };
    let exported = header.len() == EXPORT_COLUMNS.len()
        && header
            .iter()
            .zip(EXPORT_COLUMNS)
            .all(|(h, e)| h == &fold(e));
    let mut table = Table {
        exported,
        ..Table::default()
    };
    let status = find(header, &STATUS_COLUMNS).filter(|_| !exported);
    let status = match (status, purpose) {
        (Some(column), Purpose::OptOuts) => {
            table.notes.push(format!(
                "column {:?}: only rows whose status means an opt-out are imported",
                header[column]
            ));
            Some(column)
        }
        (Some(column), Purpose::Other) => {
            table.notes.push(format!(
                "column {:?} is ignored: statuses filter only imports of opt-outs",
                header[column]
            ));
            None
        }
        (None, _) => None,
    };
    let layout = Layout {
        delimiter,
        address: column,
        status,
        exported,
    };
    table.rows = csv_rows(&text[header_end..], header_line + 1, &layout);
    Ok(table)
}

/// The text of `bytes`: UTF-8 (a BOM dropped), or UTF-16 after its BOM.
fn decode(bytes: Vec<u8>) -> Result<String, ImportError> {
    let utf16 = |bytes: &[u8], from: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = bytes.chunks_exact(2).map(|c| from([c[0], c[1]])).collect();
        String::from_utf16(&units).map_err(|_| ImportError::Encoding)
    };
    match bytes.as_slice() {
        [0xEF, 0xBB, 0xBF, rest @ ..] => {
            String::from_utf8(rest.to_vec()).map_err(|_| ImportError::Encoding)
        }
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => String::from_utf8(bytes).map_err(|_| ImportError::Encoding),
    }
}

/// The first line that is neither blank nor a `#` comment: its number and byte range.
fn first_content_line(text: &str) -> Option<(u64, usize, usize)> {
    let mut start = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let end = start + line.len();
        let t = line.trim();
        if !t.is_empty() && !t.starts_with('#') {
            return Some((i as u64 + 1, start, end));
        }
        start = end;
    }
    None
}

/// The delimiter that occurs most often outside quotes in `line`, if any does.
fn delimiter_of(line: &str) -> Option<u8> {
    let mut quoted = false;
    let mut counts = [0usize; 3];
    for b in line.bytes() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let (index, most) = counts
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .unwrap_or((0, &0));
    (*most > 0).then_some([b',', b';', b'\t'][index])
}

/// The header's fields, parsed as CSV (so a quoted name with a comma is one field) and
/// folded.
fn split_header(line: &str, delimiter: u8) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => record.iter().map(fold).collect(),
        _ => Vec::new(),
    }
}

/// A header name for comparison: lower case, without spaces, `_`, `-` and quotes.
fn fold(name: &str) -> String {
    name.trim()
        .trim_matches('"')
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn find(header: &[String], names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|name| header.iter().position(|f| f == name))
}

/// Whether a first line with delimiters is a header rather than data: no field of it
/// holds an `@`.
fn looks_like_header(line: &str) -> bool {
    !line.contains('@')
}

/// One address per line.
fn plain_list(text: &str, first_line: u64, skip_first: bool) -> Table {
    let rows = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i as u64 + 1, line.trim()))
        .filter(|(n, t)| {
            let header = skip_first && *n == first_line;
            *n >= first_line && !header && !t.is_empty() && !t.starts_with('#')
        })
        .map(|(n, t)| (n, Ok(Item::Address(t.to_owned()))))
        .collect();
    Table {
        rows,
        ..Table::default()
    }
}

/// Where things are in the rows of a CSV file.
struct Layout {
    delimiter: u8,
    address: usize,
    status: Option<usize>,
    exported: bool,
}

/// The most lines one record of a `consent export` may span (its evidence may hold line
/// breaks); a quote still open after that is unbalanced.
const MAX_RECORD_LINES: usize = 50;

/// The rows of `text`, whose first line is line `first_line` of the file. Records are
/// assembled line by line: a line whose quotes are balanced is a record; in the export
/// format, lines are joined while a quote is open (up to [`MAX_RECORD_LINES`]). An
/// unbalanced quote is reported at its line, and reading goes on at the next line, so the
/// work is linear in the file whatever it holds.
fn csv_rows(text: &str, first_line: u64, layout: &Layout) -> Vec<Row> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut rows = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = first_line + i as u64;
        let mut end = i + 1;
        let mut open = odd_quotes(lines[i]);
        if layout.exported {
            while open && end < lines.len() && end - i < MAX_RECORD_LINES {
                open ^= odd_quotes(lines[end]);
                end += 1;
            }
        }
        if open {
            rows.push((
                line,
                Err("unbalanced quote: a quoted field is not closed".into()),
            ));
            i += 1;
            continue;
        }
        let record_text = lines[i..end].concat();
        i = end;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(layout.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(record_text.as_bytes());
        let mut record = csv::StringRecord::new();
        match reader.read_record(&mut record) {
            Ok(true) if record.iter().any(|f| !f.trim().is_empty()) => {
                rows.push((line, item(&record, layout)));
            }
            Ok(_) => {}
            Err(e) => rows.push((line, Err(e.to_string()))),
        }
    }
    rows
}

/// Whether `line` holds an odd number of `"`: a quoted field stays open past its end
/// (a doubled `""` inside quotes counts twice).
fn odd_quotes(line: &str) -> bool {
    line.bytes().filter(|&b| b == b'"').count() % 2 == 1
}

/// What a CSV record asks for.
fn item(record: &csv::StringRecord, layout: &Layout) -> Result<Item, String> {
    let field = |i: usize| record.get(i).map(str::trim).unwrap_or("");
    let address = field(layout.address);
    if address.is_empty() {
        return Err(format!("no value in column {}", layout.address + 1));
    }
    if layout.exported {
        return exported(record).map(Item::Record);
    }
    if let Some(column) = layout.status {
        let status = field(column);
        if !OPT_OUT_STATUSES.contains(&fold(status).as_str()) {
            return Ok(Item::Skipped(format!(
                "status {status:?} is not an opt-out"
            )));
        }
    }
    Ok(Item::Address(address.to_owned()))
}

/// A record of `consent export`. The evidence is kept as written, spaces and all.
fn exported(record: &csv::StringRecord) -> Result<Exported, String> {
    let field = |i: usize| record.get(i).map(str::trim).unwrap_or("");
    Ok(Exported {
        address: field(0).to_owned(),
        channel: field(1).parse().map_err(|e| format!("channel: {e}"))?,
        scope: field(2).parse().map_err(|e| format!("scope: {e}"))?,
        value: field(3).parse().map_err(|e| format!("value: {e}"))?,
        source: field(4).parse().map_err(|e| format!("source: {e}"))?,
        at: humantime::parse_rfc3339(field(5)).map_err(|e| format!("updated_at: {e}"))?,
        evidence: record.get(6).unwrap_or("").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<Row> {
        read(text.as_bytes(), Purpose::OptOuts).unwrap().rows
    }

    fn address(line: u64, a: &str) -> Row {
        (line, Ok(Item::Address(a.into())))
    }

    #[test]
    fn plain_lists_skip_blanks_and_comments() {
        assert_eq!(
            rows("# unsubscribes\na@example.com\n\n  b@example.com  \n"),
            [address(2, "a@example.com"), address(4, "b@example.com")]
        );
        assert_eq!(
            rows("email\na@example.com\n"),
            [address(2, "a@example.com")]
        );
    }

    #[test]
    fn mailchimp_export_uses_the_email_address_column() {
        let text = "\"Email Address\",\"First Name\",UNSUB_TIME\n\
                    jane@example.com,Jane,2024-01-01\n\
                    \"joe@example.com\",\"Doe, Joe\",2024-01-02\n";
        assert_eq!(
            rows(text),
            [
                address(2, "jane@example.com"),
                address(3, "joe@example.com")
            ]
        );
    }

    #[test]
    fn a_quoted_header_field_with_a_comma_is_one_field() {
        let text = "\"Name, full\",Email\n\"Doe, Jane\",jane@example.com\n";
        assert_eq!(rows(text), [address(2, "jane@example.com")]);
    }

    #[test]
    fn an_unbalanced_quote_is_reported_and_the_rest_still_read() {
        // Regression (issue 11, item 6): one stray quote swallowed 1 977 rows silently.
        let text = "email,name\na@example.com,\"Jane\nb@example.com,Bob\nc@example.com,Carl\n";
        let got = rows(text);
        assert!(
            matches!(&got[0], (2, Err(e)) if e.contains("unbalanced quote")),
            "{got:?}"
        );
        assert_eq!(
            got[1..],
            [address(3, "b@example.com"), address(4, "c@example.com")]
        );
    }

    #[test]
    fn bom_and_utf16_files_are_read() {
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(b"email\nx@example.com\n");
        let utf8 = read(bom.as_slice(), Purpose::OptOuts).unwrap().rows;
        assert_eq!(utf8, [address(2, "x@example.com")]);
        let mut le = vec![0xFF, 0xFE];
        le.extend(
            "Email\tName\r\nx@example.com\tX\r\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        );
        let utf16 = read(le.as_slice(), Purpose::OptOuts).unwrap().rows;
        assert_eq!(utf16, [address(2, "x@example.com")]);
        assert!(matches!(
            read(&[0xC3, 0x28][..], Purpose::OptOuts),
            Err(ImportError::Encoding)
        ));
    }

    #[test]
    fn a_status_column_filters_opt_outs_only() {
        let text = "email,name,status\na@example.com,A,blocklisted\nb@example.com,B,enabled\n\
                    c@example.com,C,Unsubscribed\n";
        let table = read(text.as_bytes(), Purpose::OptOuts).unwrap();
        assert_eq!(table.rows[0], address(2, "a@example.com"));
        assert!(matches!(&table.rows[1], (3, Ok(Item::Skipped(_)))));
        assert_eq!(table.rows[2], address(4, "c@example.com"));
        assert!(table.notes[0].contains("status"));
        let other = read(text.as_bytes(), Purpose::Other).unwrap();
        assert_eq!(other.rows.len(), 3);
        assert!(other.notes[0].contains("ignored"));
    }

    #[test]
    fn semicolons_tabs_and_short_rows() {
        assert_eq!(
            rows("id;E-Mail\n1;a@example.com\n2\n"),
            [
                address(2, "a@example.com"),
                (3, Err("no value in column 2".into()))
            ]
        );
        assert_eq!(
            rows("address\tcreated_at\nx@example.com\t1\n"),
            [address(2, "x@example.com")]
        );
    }

    #[test]
    fn a_csv_without_an_address_column_is_refused() {
        assert!(matches!(
            read("name,phone\nJane,1\n".as_bytes(), Purpose::OptOuts),
            Err(ImportError::NoAddressColumn(_))
        ));
    }

    #[test]
    fn the_export_format_is_read_whole() {
        let text = "address,channel,scope,value,source,updated_at,evidence\n\
                    a@example.com,email,promotions,y,cli,2026-01-02T03:04:05Z,\"two\nlines\"\n";
        let table = read(text.as_bytes(), Purpose::OptOuts).unwrap();
        assert!(table.exported);
        let [(2, Ok(Item::Record(r)))] = &table.rows[..] else {
            panic!("{:?}", table.rows);
        };
        assert_eq!(r.scope.as_str(), "promotions");
        assert_eq!(r.value, ConsentValue::Yes);
        assert_eq!(r.evidence, "two\nlines");
    }
}
