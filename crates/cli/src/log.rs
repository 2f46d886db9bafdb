//! What skiff says on stderr besides its results: one line per message in
//! one style (`skiff: warning: …`, `skiff: error: …`, `skiff: …` for news),
//! colored only on a terminal and never under `NO_COLOR`; with `--debug`,
//! every step (fetch, verify, render, prepare, stage1's exec) is traced
//! with its duration and the time since skiff started.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// When logging started (about when skiff did).
static STARTED: OnceLock<Instant> = OnceLock::new();

fn since_start() -> f64 {
    STARTED.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

/// Whether stderr may be colored: a terminal, and `NO_COLOR` unset or
/// empty (<https://no-color.org>).
pub fn color_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` on one line with nothing a terminal would act on: controls
/// (newlines too) and hidden characters written as visible escapes.
/// Messages and fields carry names, paths and URLs from images and
/// servers: none may move the cursor or start a forged line.
fn one_line(text: &str) -> String {
    String::from_utf8_lossy(&skiff_pod::logs::visible(text.as_bytes())).into_owned()
}

/// The prefix of a message at `level`, colored when `color`.
fn prefix(level: Level, color: bool) -> String {
    let (label, style) = match level {
        Level::ERROR => ("error: ", "1;31"),
        Level::WARN => ("warning: ", "1;33"),
        Level::INFO => ("", ""),
        Level::DEBUG => ("debug: ", "2"),
        Level::TRACE => ("trace: ", "2"),
    };
    if color && !style.is_empty() {
        format!("skiff: \x1b[{style}m{label}\x1b[0m")
    } else {
        format!("skiff: {label}")
    }
}

/// A warning printed outside tracing (before it is set up, or by code
/// that reports through a callback), in the same style.
pub fn warning(text: &str) {
    eprintln!(
        "{}{}",
        prefix(Level::WARN, color_on_stderr()),
        one_line(text)
    );
}

/// An error line, in the same style.
pub fn error(text: &str) {
    eprintln!(
        "{}{}",
        prefix(Level::ERROR, color_on_stderr()),
        one_line(text)
    );
}

/// Events as `skiff: [level: ]message field=value …`; debug lines carry
/// the milliseconds since skiff started.
struct Lines;

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        write!(writer, "{}", prefix(level, writer.has_ansi_escapes()))?;
        if level >= Level::DEBUG {
            write!(writer, "+{:.1} ms ", since_start())?;
            if let Some(scope) = ctx.event_scope() {
                let names: Vec<&str> = scope.from_root().map(|s| s.name()).collect();
                write!(writer, "[{}] ", names.join(" > "))?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The fields of a span as `name=value …`.
struct FieldText(String);

impl Visit for FieldText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(
            self.0,
            "{}={}",
            field.name(),
            one_line(&format!("{value:?}"))
        );
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// When a span started, and its fields.
struct Started(Instant, String);

/// With `--debug`: each step (a span) says how long it took when it ends.
struct Timings;

impl<S> tracing_subscriber::Layer<S> for Timings
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // skiff's own steps, not its libraries' inner spans.
        if !attrs.metadata().target().starts_with("skiff") {
            return;
        }
        let mut fields = FieldText(String::new());
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut()
                .insert(Started(Instant::now(), fields.0));
        }
    }

    #[allow(clippy::print_stderr)]
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let extensions = span.extensions();
        let Some(Started(at, fields)) = extensions.get::<Started>() else {
            return;
        };
        let fields = if fields.is_empty() {
            String::new()
        } else {
            format!(" ({fields})")
        };
        eprintln!(
            "{}+{:.1} ms {}{fields} took {:.1} ms",
            prefix(Level::DEBUG, color_on_stderr()),
            since_start(),
            span.name(),
            at.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// Sets up what is printed: warnings and news from skiff's crates; with
/// `debug`, everything and each step's timing; `SKIFF_LOG` (EnvFilter
/// directives) overrides both.
pub fn init(debug: bool) {
    // SKIFF_LOG takes full EnvFilter directives; the default is a plain
    // target filter (no regex to compile on every start: pods start fast).
    match tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG") {
        Ok(filter) => install(filter, debug),
        Err(_) => init_without_env(debug),
    }
}

/// [`init`] for a process that leaves `SKIFF_LOG` to another (the small
/// `skiff` hands such runs to `skiff-full`): the default filter only, and
/// none of EnvFilter's regex code in the binary.
pub fn init_without_env(debug: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let filter = if debug {
        Targets::new().with_default(LevelFilter::DEBUG)
    } else {
        Targets::new()
            .with_default(LevelFilter::WARN)
            .with_targets(
                [
                    "skiff",
                    "skiff_fetch",
                    "skiff_store",
                    "skiff_trust",
                    "skiff_metadata",
                ]
                .map(|t| (t, LevelFilter::INFO)),
            )
            // rPGP warns about each malformed packet of a hostile signature,
            // over many lines; skiff's own refusal says what matters.
            .with_target("pgp", LevelFilter::ERROR)
    };
    install(filter, debug);
}

/// Sets up tracing with `filter`: each event on one line of stderr, in
/// skiff's style; with `debug`, each step's duration.
fn install<F>(filter: F, debug: bool)
where
    F: tracing_subscriber::layer::Filter<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    use tracing_subscriber::field::MakeExt;
    use tracing_subscriber::prelude::*;
    let _ = STARTED.set(Instant::now());
    // Every field (the message too) on one line, without controls.
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = one_line(&format!("{value:?}"));
        if field.name() == "message" {
            write!(writer, "{text}")
        } else {
            write!(writer, "{}={text}", field.name())
        }
    })
    .delimited(" ");
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(color_on_stderr())
        .fmt_fields(fields)
        .event_format(Lines);
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(debug.then_some(Timings))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_style_with_color_only_when_asked() {
        assert_eq!(prefix(Level::WARN, false), "skiff: warning: ");
        assert_eq!(prefix(Level::ERROR, false), "skiff: error: ");
        assert_eq!(prefix(Level::INFO, true), "skiff: ");
        assert_eq!(
            prefix(Level::WARN, true),
            "skiff: \x1b[1;33mwarning: \x1b[0m"
        );
    }
}
