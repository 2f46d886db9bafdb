//! `skiff logs`: a pod's app output, from the logs stage1 keeps.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use skiff_ops::logs::{Line, LogOptions};
use skiff_pod::logs::Stream;

use crate::config::GlobalArgs;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Only this app's output (default: every app's, in time order, each
    /// line after its app's name when the pod has several).
    #[arg(long, value_name = "NAME")]
    app: Option<String>,
    /// Go on printing what the apps write until the pod has ended.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only output since this time: a duration back from now (90s, 10m,
    /// 1h30m, 2d) or an RFC 3339 time (2026-12-02T10:00:00Z).
    #[arg(long, value_name = "DURATION|TIME")]
    since: Option<String>,
    /// Only the last N lines of what is already logged.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Print each line's time (RFC 3339, UTC, nanoseconds) before it.
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Pod UUID (or a unique prefix).
    uuid: String,
}

/// Where the next piece of a stream's output starts: a new line or the
/// rest of one.
#[derive(Default)]
struct Printer {
    /// (app, stream) whose last piece ended inside a line.
    inside: HashMap<(String, Stream), ()>,
    prefix_apps: bool,
    timestamps: bool,
    /// stdout and stderr are terminals: output is shown with what could
    /// fool one (escape sequences, a carriage return that hides the app's
    /// name) escaped.
    terminal: [bool; 2],
}

impl Printer {
    /// Prints one entry on stdout or stderr, as the app wrote it; false
    /// once the reader is gone.
    fn print(&mut self, line: &Line) -> bool {
        let key = (line.app.clone(), line.entry.stream);
        let mut text = Vec::with_capacity(line.entry.content.len() + 64);
        if self.inside.remove(&key).is_none() {
            if self.timestamps {
                text.extend_from_slice(skiff_pod::logs::timestamp(line.entry.time).as_bytes());
                text.push(b' ');
            }
            if self.prefix_apps {
                text.extend_from_slice(line.app.as_bytes());
                text.extend_from_slice(b" | ");
            }
        }
        let n = line.entry.stream.index();
        match self.terminal[n] {
            true => text.extend_from_slice(&skiff_pod::logs::visible(&line.entry.content)),
            false => text.extend_from_slice(&line.entry.content),
        }
        if line.entry.partial {
            self.inside.insert(key, ());
        } else {
            text.push(b'\n');
        }
        let written = match line.entry.stream {
            Stream::Stdout => std::io::stdout().lock().write_all(&text),
            Stream::Stderr => std::io::stderr().lock().write_all(&text),
        };
        written.is_ok()
    }
}

pub fn run(global: &GlobalArgs, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let since = args
        .since
        .as_deref()
        .map(|s| skiff_ops::logs::parse_since(s, time::OffsetDateTime::now_utc()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let ctx = global.context()?;
    let opts = LogOptions {
        app: args.app.clone(),
        follow: args.follow,
        since,
        tail: args.tail,
    };
    let mut printer = Printer {
        prefix_apps: args.app.is_none() && skiff_ops::logs::app_count(&ctx, &args.uuid)? > 1,
        timestamps: args.timestamps,
        terminal: [
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ],
        ..Printer::default()
    };
    skiff_ops::logs::read(&ctx, &args.uuid, &opts, |line| printer.print(line))?;
    Ok(ExitCode::SUCCESS)
}
