//! Reading lists of addresses that operators bring from elsewhere: one address per line,
//! or the CSV exports of common ESPs (Mailchimp's `Email Address`, SendGrid's `email`,
//! Mailgun's `address` ...), with `,`, `;` or tab between fields.
//!
//! A bad row is reported with its line number and skipped; it never costs the good rows.

use std::io::{BufRead, BufReader, Read};

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

/// One row: its line number in the file and the address text, or why it has none.
pub type Row = (u64, Result<String, String>);

/// A file that cannot be read as a list at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the file")]
    Io(#[from] std::io::Error),
    #[error(
        "the header row {0:?} has no address column (expected one named like email, Email Address or address)"
    )]
    NoAddressColumn(String),
    #[error("CSV error")]
    Csv(#[from] csv::Error),
}

/// Reads every row of `input`.
pub fn read_rows(input: impl Read) -> Result<Vec<Row>, ImportError> {
    let mut reader = BufReader::new(input);
    let mut first = String::new();
    let mut skipped = 0u64;
    // Find the first line with content; blank lines and comments before it are skipped.
    loop {
        first.clear();
        if reader.read_line(&mut first)? == 0 {
            return Ok(Vec::new());
        }
        let t = first.trim();
        if !t.is_empty() && !t.starts_with('#') {
            break;
        }
        skipped += 1;
    }
    let delimiter = [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|&d| first.bytes().filter(|&b| b == d).count())
        .filter(|&d| first.as_bytes().contains(&d));
    let header_column = header_column(&first, delimiter.unwrap_or(b','));
    match (delimiter, header_column) {
        (_, Some(column)) => {
            let rest = reader;
            read_csv(rest, delimiter.unwrap_or(b','), column, skipped + 1)
        }
        (None, None) => {
            let mut rows = vec![(skipped + 1, Ok(first.trim().to_owned()))];
            for (i, line) in reader.lines().enumerate() {
                let line = line?;
                let t = line.trim();
                if !t.is_empty() && !t.starts_with('#') {
                    rows.push((skipped + 2 + i as u64, Ok(t.to_owned())));
                }
            }
            Ok(rows)
        }
        (Some(_), None) => Err(ImportError::NoAddressColumn(first.trim().to_owned())),
    }
}

/// The index of the address column when `line` is a header row.
fn header_column(line: &str, delimiter: u8) -> Option<usize> {
    let fields: Vec<String> = line
        .trim()
        .split(delimiter as char)
        .map(|f| {
            f.trim()
                .trim_matches('"')
                .chars()
                .filter(|c| !matches!(c, ' ' | '_' | '-'))
                .flat_map(char::to_lowercase)
                .collect()
        })
        .collect();
    ADDRESS_COLUMNS
        .iter()
        .find_map(|name| fields.iter().position(|f| f == name))
}

fn read_csv(
    rest: impl Read,
    delimiter: u8,
    column: usize,
    header_line: u64,
) -> Result<Vec<Row>, ImportError> {
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(rest);
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = header_line + csv.position().line();
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                rows.push((line, Err(e.to_string())));
                continue;
            }
        }
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        rows.push(match record.get(column).map(str::trim) {
            Some(a) if !a.is_empty() => (line, Ok(a.to_owned())),
            _ => (line, Err(format!("no value in column {}", column + 1))),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<Row> {
        read_rows(text.as_bytes()).unwrap()
    }

    #[test]
    fn plain_lists_skip_blanks_and_comments() {
        assert_eq!(
            rows("# unsubscribes\na@example.com\n\n  b@example.com  \n"),
            [
                (2, Ok("a@example.com".into())),
                (4, Ok("b@example.com".into()))
            ]
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
                (2, Ok("jane@example.com".into())),
                (3, Ok("joe@example.com".into()))
            ]
        );
    }

    #[test]
    fn semicolons_tabs_and_short_rows() {
        assert_eq!(
            rows("id;E-Mail\n1;a@example.com\n2\n"),
            [
                (2, Ok("a@example.com".into())),
                (3, Err("no value in column 2".into()))
            ]
        );
        assert_eq!(
            rows("address\tcreated_at\nx@example.com\t1\n"),
            [(2, Ok("x@example.com".into()))]
        );
    }

    #[test]
    fn a_csv_without_an_address_column_is_refused() {
        assert!(matches!(
            read_rows("name,phone\nJane,1\n".as_bytes()),
            Err(ImportError::NoAddressColumn(_))
        ));
    }
}
