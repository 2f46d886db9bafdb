//! `skiff top`, `skiff stats` and `skiff cp`: a running pod's processes,
//! what it uses, and its files.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::commands::pods::Format;
use crate::config::GlobalArgs;
use crate::format::{human_size, printable};

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Output format: table or json.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Pod UUID (or a unique prefix).
    uuid: String,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Output format: table or json.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// How long CPU use is measured over (2s, 1m; default 1s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::config::parse_duration)]
    interval: Duration,
    /// Pod UUID (or a unique prefix).
    uuid: String,
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// The app whose files are meant (default: the pod's first).
    #[arg(long, value_name = "NAME")]
    app: Option<String>,
    /// What to copy: UUID:PATH in a running pod, or a host path.
    source: String,
    /// Where to: a host path, or UUID:PATH in a running pod. An existing
    /// directory receives the source under its own name.
    dest: String,
}

pub fn cp(global: &GlobalArgs, args: CpArgs) -> anyhow::Result<ExitCode> {
    let from = skiff_ops::copy::Endpoint::parse(&args.source);
    let to = skiff_ops::copy::Endpoint::parse(&args.dest);
    let copied = skiff_ops::copy::cp(&global.context()?, &from, &to, args.app.as_deref())?;
    for line in &copied.skipped {
        eprintln!("skiff: skipped {}", printable(line));
    }
    eprintln!(
        "copied {} file(s), {}",
        copied.files,
        human_size(copied.bytes)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn top(global: &GlobalArgs, args: TopArgs) -> anyhow::Result<ExitCode> {
    let processes = skiff_ops::stats::top(&global.context()?, &args.uuid)?;
    if let Format::Json = args.format {
        crate::format::print_json(&processes)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:>7} {:>8} {:>6} {:>10} {:>9}  COMMAND",
        "APP", "PID", "HOST-PID", "UID", "RSS", "TIME"
    );
    for p in &processes {
        println!(
            "{:<16} {:>7} {:>8} {:>6} {:>10} {:>9}  {}",
            p.app.as_deref().unwrap_or("-"),
            p.pid.map_or("-".to_string(), |pid| pid.to_string()),
            p.host_pid,
            p.uid,
            human_size(p.rss),
            cpu_time(p.cpu_seconds),
            printable(&p.command)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// CPU seconds as `M:SS.ss`.
fn cpu_time(seconds: f64) -> String {
    let minutes = (seconds / 60.0).floor();
    format!("{}:{:05.2}", minutes as u64, seconds - minutes * 60.0)
}

pub fn stats(global: &GlobalArgs, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let stats = skiff_ops::stats::stats(&global.context()?, &args.uuid, args.interval)?;
    if let Format::Json = args.format {
        crate::format::print_json(&stats)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:>6} {:>9} {:>10} {:>10} {:>6} {:>5} {:>6}",
        "APP", "CPU %", "CPU TIME", "MEM", "MEM LIMIT", "MEM %", "PIDS", "LIMIT"
    );
    for usage in std::iter::once(&stats.pod).chain(&stats.apps) {
        let limit_or_dash =
            |limit: Option<u64>, show: fn(u64) -> String| limit.map_or("-".to_string(), show);
        let mem_percent = match (usage.memory, usage.memory_limit) {
            (Some(used), Some(limit)) if limit > 0 => {
                format!("{:.1}", used as f64 * 100.0 / limit as f64)
            }
            _ => "-".to_string(),
        };
        println!(
            "{:<16} {:>6.1} {:>9} {:>10} {:>10} {:>6} {:>5} {:>6}",
            usage.app.as_deref().unwrap_or("(pod)"),
            usage.cpu_percent,
            cpu_time(usage.cpu_seconds),
            limit_or_dash(usage.memory, human_size),
            limit_or_dash(usage.memory_limit, human_size),
            mem_percent,
            usage.pids,
            limit_or_dash(usage.pids_limit, |n| n.to_string()),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_and_command_lines_print_safely() {
        assert_eq!(cpu_time(0.5), "0:00.50");
        assert_eq!(cpu_time(125.25), "2:05.25");
        assert_eq!(printable("sh\u{1b}[2J\u{202e}x"), "sh?[2J?x");
    }
}
