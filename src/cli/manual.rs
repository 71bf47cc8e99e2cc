//! `optout-milter manual PAGE` and `optout-milter completions SHELL`: the manual pages
//! `optout-milter(8)` and `optout-milter.toml(5)` and the shell completions, generated
//! from what the program takes (the command line's clap definition, and the example
//! config that documents every key and is tested to load), so that they cannot drift
//! from it. The package builds them with these commands.

use clap::CommandFactory;
use std::io::{self, Write};

/// A manual page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Page {
    /// The program and its commands.
    #[value(name = "optout-milter.8")]
    Program,
    /// The config file.
    #[value(name = "optout-milter.toml.5")]
    Config,
}

/// The example config: every key, with its documentation and default.
const EXAMPLE: &str = include_str!("../../config/optout-milter.toml");

/// Writes `page` in roff to `out`.
pub fn write(page: Page, out: &mut dyn Write) -> io::Result<()> {
    match page {
        Page::Program => program(out),
        Page::Config => out.write_all(config_page().as_bytes()),
    }
}

/// Writes the completions for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut command = super::Cli::command();
    clap_complete::generate(shell, &mut command, "optout-milter", out);
}

/// `optout-milter(8)`: clap_mangen's page for the program, then each command with its
/// arguments, then the files and where to read on.
fn program(out: &mut dyn Write) -> io::Result<()> {
    let command = super::Cli::command();
    let man = clap_mangen::Man::new(command.clone()).section("8");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in command.get_subcommands() {
        commands(out, &["optout-milter"], sub)?;
    }
    writeln!(
        out,
        ".SH FILES\n.TP\n.I /etc/optout-milter/optout-milter.toml\nThe config file (see\n.BR optout-milter.toml (5)).\n.TP\n.I /var/lib/optout-milter/\nThe SQLite store, when the config keeps the default."
    )?;
    writeln!(
        out,
        ".SH SIGNALS\n.TP\n.B SIGHUP\nRead the config file again; a file with a mistake is logged and the running configuration stays.\n.TP\n.B SIGTERM\nStop accepting, let work in flight finish, remove the Unix sockets, exit 0."
    )?;
    writeln!(
        out,
        ".SH SEE ALSO\n.BR optout-milter.toml (5),\n.BR postconf (5),\n.BR opendkim (8)"
    )?;
    man.render_version_section(out)
}

/// `command` (under `path`) and its own commands, each with its arguments.
fn commands(out: &mut dyn Write, path: &[&str], command: &clap::Command) -> io::Result<()> {
    if command.get_name() == "help" {
        return Ok(());
    }
    let mut path = path.to_vec();
    path.push(command.get_name());
    let usage: Vec<String> = command
        .get_arguments()
        .filter(|a| a.is_positional())
        .map(|a| format!("\\fI{}\\fR", roff(&a.get_id().as_str().to_uppercase())))
        .collect();
    writeln!(out, ".SS \"{}\"", roff(&path.join(" ")))?;
    if !usage.is_empty() {
        writeln!(out, "{}\n.br", usage.join(" "))?;
    }
    if let Some(about) = command.get_long_about().or(command.get_about()) {
        writeln!(out, "{}", roff(&about.to_string()))?;
    }
    for arg in command.get_arguments().filter(|a| !a.is_global_set()) {
        let name = match (arg.get_long(), arg.get_short()) {
            (Some(long), Some(short)) => {
                format!("\\fB\\-{short}\\fR, \\fB\\-\\-{}\\fR", roff(long))
            }
            (Some(long), None) => format!("\\fB\\-\\-{}\\fR", roff(long)),
            (None, _) => format!("\\fI{}\\fR", roff(&arg.get_id().as_str().to_uppercase())),
        };
        let takes_value = arg.get_action().takes_values() && !arg.is_positional();
        let value = match arg.get_value_names() {
            Some(names) if takes_value => format!(
                " \\fI{}\\fR",
                roff(
                    &names
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            ),
            _ if takes_value => format!(" \\fI{}\\fR", roff(&arg.get_id().as_str().to_uppercase())),
            _ => String::new(),
        };
        writeln!(out, ".TP\n{name}{value}")?;
        if let Some(help) = arg.get_long_help().or(arg.get_help()) {
            writeln!(out, "{}", roff(&help.to_string()))?;
        }
    }
    for sub in command.get_subcommands() {
        commands(out, &path, sub)?;
    }
    Ok(())
}

/// `optout-milter.toml(5)`, from the example config: each table a section, its comments
/// the text, each key (set or commented out) an item with the example's value.
pub fn config_page() -> String {
    let mut page = String::from(concat!(
        ".TH OPTOUT-MILTER.TOML 5 \"\" \"optout-milter ",
        env!("CARGO_PKG_VERSION"),
        "\"\n.SH NAME\noptout-milter.toml \\- configuration of optout-milter\n",
        ".SH DESCRIPTION\nThe file is TOML. Unknown keys are refused; every value is checked at start ",
        "(and at each reload) with a message that names the file and the key. Keys left out take ",
        "the defaults said below. The example below each key is the one shipped in the package's ",
        "documentation; a key shown commented out (with \\fB#\\fR) is off or at its default.\n",
    ));
    let mut paragraph = String::new();
    let flush = |page: &mut String, paragraph: &mut String| {
        if !paragraph.is_empty() {
            page.push_str(&roff(paragraph.trim()));
            page.push('\n');
            paragraph.clear();
        }
    };
    let mut seen_table = false;
    let mut block = false;
    for line in EXAMPLE.lines() {
        let trimmed = line.trim();
        let bare = trimmed.trim_start_matches('#').trim();
        let is_table = |t: &str| t.starts_with('[') && t.ends_with(']') && !t.contains(' ');
        // An indented comment line is a table or a list: shown as written.
        let indented = trimmed.starts_with('#') && line.trim_start_matches('#').starts_with("   ");
        if block && !indented {
            page.push_str(".fi\n");
            block = false;
        }
        if is_table(trimmed) || (trimmed.starts_with('#') && is_table(bare)) {
            flush(&mut page, &mut paragraph);
            page.push_str(&format!(".SH \"{}\"\n", roff(bare)));
            seen_table = true;
        } else if !seen_table {
            continue;
        } else if is_key(bare) {
            flush(&mut page, &mut paragraph);
            page.push_str(&format!(".RS\n.nf\n\\fB{}\\fR\n.fi\n.RE\n", roff(bare)));
        } else if indented {
            flush(&mut page, &mut paragraph);
            if !block {
                page.push_str(".nf\n");
                block = true;
            }
            page.push_str(&roff(line.trim_start_matches('#').trim_end()));
            page.push('\n');
        } else if trimmed.starts_with('#') && !bare.is_empty() {
            paragraph.push_str(bare);
            paragraph.push(' ');
        } else {
            flush(&mut page, &mut paragraph);
            if trimmed.is_empty() || trimmed == "#" {
                page.push_str(".PP\n");
            }
        }
    }
    if block {
        page.push_str(".fi\n");
    }
    flush(&mut page, &mut paragraph);
    page.push_str(".SH SEE ALSO\n.BR optout-milter (8)\n");
    // Two paragraph breaks in a row say nothing more than one.
    while page.contains(".PP\n.PP\n") {
        page = page.replace(".PP\n.PP\n", ".PP\n");
    }
    page
}

/// Whether `text` is a key line (`name = value`), set or commented out.
fn is_key(text: &str) -> bool {
    let Some((name, _)) = text.split_once(" = ") else {
        return false;
    };
    let name = name.trim_matches('"');
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.+@".contains(&b))
}

/// `text` safe in roff: backslashes and hyphens escaped, no line starting with a control
/// character, paragraphs (blank lines) as paragraph breaks.
fn roff(text: &str) -> String {
    text.lines()
        .map(|line| {
            let escaped = line.trim_end().replace('\\', "\\e").replace('-', "\\-");
            match escaped.as_str() {
                l if l.trim().is_empty() => ".PP".to_owned(),
                l if l.trim_start().starts_with(['.', '\'']) => format!("\\&{l}"),
                _ => escaped,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
