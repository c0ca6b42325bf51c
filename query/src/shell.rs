//! `bunker sql`: the interactive shell. Line editing and persistent history come from rustyline;
//! a statement may span lines and runs when a line ends with `;`. Backslash commands describe the
//! lake (`\d`, `\d <table>`, `\df`) and change the session (`\format`, `\timing`, `\explain`).
//! A statement that takes a while shows a spinner, and Ctrl-C cancels it without leaving the shell.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Config, Editor};

use crate::progress::Spinner;
use crate::{LakeSession, OutputFormat, QueryError, Result};

const PROMPT: &str = "bunker> ";
const CONTINUATION: &str = "   ...> ";

const HELP: &str = "\
statements end with ';' and may span lines; Ctrl-C drops the current line or cancels a running
statement, Ctrl-D (or \\q) leaves
  \\d               the tables of the lake
  \\d TABLE         the columns of TABLE, with what each holds
  \\df              the functions bunker adds (JSON, IP/CIDR)
  \\format FORMAT   table, csv or json
  \\timing on|off   print the row count and time of each statement (on)
  \\explain SQL     the files and bytes SQL would read, without running it
  \\q               quit
";

/// How the shell starts.
#[derive(Debug, Clone)]
pub struct ShellOptions {
    /// The history file; `None` keeps history for this session only.
    pub history: Option<PathBuf>,
    /// The output format statements start with.
    pub format: OutputFormat,
}

/// The default history file: `$BUNKER_HISTORY`, else `$XDG_STATE_HOME/bunker/history`, else
/// `~/.local/state/bunker/history`.
pub fn default_history() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BUNKER_HISTORY") {
        return Some(PathBuf::from(path));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))?;
    Some(state.join("bunker/history"))
}

/// Runs the shell on the terminal until `\q` or end of input.
pub async fn run(session: &LakeSession, options: ShellOptions) -> Result<()> {
    let config = Config::builder().auto_add_history(false).max_history_size(10_000).map_err(readline)?.build();
    let mut editor: Editor<(), FileHistory> = Editor::with_config(config).map_err(readline)?;
    if let Some(path) = &options.history {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A missing history file is a first run, not an error.
        if path.exists() {
            editor.load_history(path).map_err(readline)?;
        }
    }
    let mut state = State { format: options.format, timing: true };
    println!("bunker sql: {} — \\? for help, \\q to quit", describe_span(session));
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() { PROMPT } else { CONTINUATION };
        let line = match tokio::task::block_in_place(|| editor.readline(prompt)) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(readline(e)),
        };
        let trimmed = line.trim();
        if pending.is_empty() && trimmed.starts_with('\\') {
            if trimmed == "\\q" {
                break;
            }
            remember(&mut editor, options.history.as_ref(), trimmed)?;
            command(session, &mut state, trimmed).await;
            continue;
        }
        if trimmed.is_empty() && pending.is_empty() {
            continue;
        }
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(&line);
        if !trimmed.ends_with(';') {
            continue;
        }
        let statement = std::mem::take(&mut pending);
        remember(&mut editor, options.history.as_ref(), &statement)?;
        run_statement(session, &state, statement.trim().trim_end_matches(';')).await;
    }
    Ok(())
}

struct State {
    format: OutputFormat,
    timing: bool,
}

fn readline(e: ReadlineError) -> QueryError {
    QueryError::Io(std::io::Error::other(format!("terminal: {e}")))
}

/// Adds an entry to the history and saves it at once, so a killed shell loses nothing.
fn remember(editor: &mut Editor<(), FileHistory>, path: Option<&PathBuf>, entry: &str) -> Result<()> {
    editor.add_history_entry(entry).map_err(readline)?;
    if let Some(path) = path {
        editor.append_history(path).map_err(readline)?;
    }
    Ok(())
}

fn describe_span(session: &LakeSession) -> String {
    let span = session.span();
    if span.is_all() { "all of the lake".to_owned() } else { format!("events in {span}") }
}

/// Runs one statement with a spinner; Ctrl-C cancels the statement, not the shell.
async fn run_statement(session: &LakeSession, state: &State, sql: &str) {
    let started = Instant::now();
    let spinner = Spinner::start();
    let mut progress = |rows: usize| {
        if let Some(spinner) = &spinner {
            spinner.rows(rows);
        }
    };
    let outcome = tokio::select! {
        result = session.sql_with_progress(sql, &mut progress) => Some(result),
        _ = tokio::signal::ctrl_c() => None,
    };
    if let Some(spinner) = spinner {
        spinner.finish();
    }
    match outcome {
        Some(Ok((schema, batches))) => {
            let mut out = std::io::stdout().lock();
            if let Err(e) = crate::render(&schema, &batches, state.format, &mut out) {
                eprintln!("error: {e}");
            }
            if state.timing {
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                let _ = writeln!(out, "({rows} rows in {:.3} s)", started.elapsed().as_secs_f64());
            }
        }
        Some(Err(e)) => eprintln!("error: {e}"),
        None => eprintln!("cancelled after {:.3} s", started.elapsed().as_secs_f64()),
    }
}

async fn command(session: &LakeSession, state: &mut State, line: &str) {
    let (name, argument) = line.split_once(char::is_whitespace).map_or((line, ""), |(n, a)| (n, a.trim()));
    match (name, argument) {
        ("\\?" | "\\h" | "\\help", _) => print!("{HELP}"),
        ("\\d", "") => {
            for (table, about) in crate::table_descriptions() {
                println!("{table:<18} {about}");
            }
        }
        ("\\d", table) => match crate::describe_table(table) {
            Some(text) => print!("{text}"),
            None => eprintln!("error: no table {table}; \\d lists them"),
        },
        ("\\df", _) => {
            for (signature, about) in crate::udf::FUNCTIONS.iter().chain(crate::presto::FUNCTIONS) {
                println!("{signature:<40} {about}");
            }
            println!("(and every DataFusion function: SELECT * FROM information_schema.routines)");
        }
        ("\\format", format) => match format {
            "table" => state.format = OutputFormat::Table,
            "csv" => state.format = OutputFormat::Csv,
            "json" => state.format = OutputFormat::Json,
            _ => eprintln!("error: \\format takes table, csv or json"),
        },
        ("\\timing", "on" | "") => state.timing = true,
        ("\\timing", "off") => state.timing = false,
        ("\\explain", sql) if !sql.is_empty() => match session.scan_report(sql.trim_end_matches(';')).await {
            Ok(report) => print!("{report}"),
            Err(e) => eprintln!("error: {e}"),
        },
        _ => eprintln!("error: unknown command {line}; \\? lists the commands"),
    }
}
