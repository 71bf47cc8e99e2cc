//! Where log lines go and how they look: standard error, as text (`name=value` fields) or
//! JSON, filtered by `OPTOUT_MILTER_LOG` (a level such as `info`, or per-target directives).
//!
//! Why not the defaults: every milter transaction opens a span (client and queue id), and
//! the subscriber formats a span's fields when it is made, logged or not. With the default
//! field formatter (styled for a terminal even when colours are off, every string escaped
//! char by char) and `EnvFilter` (a locked map lookup at every span entry), the span cost
//! about 7 % of the milter's instructions per transaction; with the plain fields and plain
//! level filter here, and each plain field written in one piece, about 2 %
//! (`benches/instructions/run.sh`, BENCHMARKS.md rounds 4 and 5).

use super::LogFormat;
use std::{fmt, io::IsTerminal};
use tracing::field::{Field, Visit};
use tracing_subscriber::{
    EnvFilter, Layer,
    field::{MakeExt, MakeVisitor, VisitFmt, VisitOutput},
    filter::LevelFilter,
    fmt::format::Writer,
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

/// The subscriber below the output layer: a plain level filter, or for per-target
/// directives an `EnvFilter`.
type Filtered = tracing_subscriber::layer::Layered<
    Option<EnvFilter>,
    tracing_subscriber::layer::Layered<Option<LevelFilter>, tracing_subscriber::Registry>,
>;

/// Installs the global subscriber. An `OPTOUT_MILTER_LOG` that does not parse means
/// `info`.
pub fn init(format: LogFormat) {
    let directive = std::env::var("OPTOUT_MILTER_LOG").unwrap_or_else(|_| "info".to_owned());
    let (level, env) = match directive.trim().parse::<LevelFilter>() {
        Ok(level) => (Some(level), None),
        Err(_) => (
            None,
            Some(EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"))),
        ),
    };
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output: Box<dyn Layer<Filtered> + Send + Sync> = match format {
        LogFormat::Text => output
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(PlainFields.delimited(" "))
            .boxed(),
        LogFormat::Json => output
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(level)
        .with(env)
        .with(output)
        .init();
}

/// `name=value` fields; the message bare.
#[derive(Clone, Copy)]
struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> Self::Visitor {
        PlainVisitor {
            writer,
            result: Ok(()),
        }
    }
}

struct PlainVisitor<'a> {
    writer: Writer<'a>,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    fn name(&mut self, field: &Field) -> fmt::Result {
        match field.name() {
            "message" => Ok(()),
            name => {
                self.writer.write_str(name)?;
                self.writer.write_char('=')
            }
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        // Quoted as Debug would, without its char-by-char escaping when nothing needs it
        // (a queue id, an address): a value can never forge a line or a field.
        let plain = value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        self.result = match plain {
            true if field.name() == "message" => self.writer.write_str(value),
            // In one piece: each write may grow the span's string (a reallocation each),
            // and a span's fields are formatted when it is made, logged or not.
            true => match Quoted::new(field.name(), value) {
                Some(quoted) => self.writer.write_str(quoted.as_str()),
                None => self
                    .name(field)
                    .and_then(|()| write!(self.writer, "\"{value}\"")),
            },
            false => self
                .name(field)
                .and_then(|()| write!(self.writer, "{value:?}")),
        };
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = self
                .name(field)
                .and_then(|()| write!(self.writer, "{value:?}"));
        }
    }
}

/// `name="value"` on the stack, for values that need no escaping.
struct Quoted {
    bytes: [u8; 96],
    len: usize,
}

impl Quoted {
    /// None when it does not fit.
    fn new(name: &str, value: &str) -> Option<Self> {
        let len = name.len() + value.len() + 3;
        let mut bytes = [0; 96];
        let out = bytes.get_mut(..len)?;
        let (n, rest) = out.split_at_mut(name.len());
        n.copy_from_slice(name.as_bytes());
        rest[..2].copy_from_slice(b"=\"");
        rest[2..2 + value.len()].copy_from_slice(value.as_bytes());
        rest[2 + value.len()] = b'"';
        Some(Self { bytes, len })
    }

    fn as_str(&self) -> &str {
        // Built from two strs and ASCII punctuation.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What `emit` logs through the text format, without time and level.
    fn text(emit: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_level(false)
            .fmt_fields(PlainFields.delimited(" "))
            .with_writer(move || SharedBuffer(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn fields_are_quoted_and_nothing_can_forge_a_line() {
        let line = text(|| {
            let span = tracing::info_span!("milter", client = "192.0.2.1", queue_id = "4Xy7");
            let _in = span.enter();
            tracing::info!(
                rcpt = "jane@example.org",
                forged = "x\nFeb 1 postfix: fake",
                quote = "a\"b",
                count = 3,
                "recipient refused"
            );
        });
        assert_eq!(
            line,
            "milter{client=\"192.0.2.1\" queue_id=\"4Xy7\"}: recipient refused \
             rcpt=\"jane@example.org\" forged=\"x\\nFeb 1 postfix: fake\" quote=\"a\\\"b\" count=3\n"
        );
    }

    #[test]
    fn a_value_too_long_for_the_stack_is_written_the_same_way() {
        let long = "a".repeat(200);
        let line = text(|| tracing::info!(short = "b", long = long.as_str(), "x"));
        assert_eq!(line, format!("x short=\"b\" long=\"{long}\"\n"));
    }
}
