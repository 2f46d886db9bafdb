//! `skiff version`: what this skiff is and what it runs pods with.

use std::process::ExitCode;

use crate::commands::pods::Format;
use crate::config::GlobalArgs;

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Version {
    version: &'static str,
    commit: &'static str,
    /// The commit's date (or SOURCE_DATE_EPOCH), RFC 3339.
    built: String,
    rustc: &'static str,
    appc_version: String,
    flavors: Vec<&'static str>,
    /// The stage1 program pods run with, or why there is none.
    stage1: String,
}

pub fn run(global: &GlobalArgs, format: Format) -> anyhow::Result<ExitCode> {
    let epoch: i64 = env!("SKIFF_BUILD_EPOCH").parse().unwrap_or(0);
    let stage1 = match skiff_pod::stage1::locate(global.stage1_path.as_deref()) {
        Ok(path) => path.display().to_string(),
        Err(e) => format!("none ({e})"),
    };
    let v = Version {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("SKIFF_COMMIT"),
        built: skiff_pod::rfc3339(epoch),
        rustc: env!("SKIFF_RUSTC"),
        appc_version: skiff_spec::APPC_SPEC_VERSION.to_string(),
        flavors: skiff_pod::Flavor::ALL.iter().map(|f| f.as_str()).collect(),
        stage1,
    };
    if let Format::Json = format {
        crate::format::print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("skiff version {}", v.version);
    println!("appc version {}", v.appc_version);
    println!("commit {} ({})", v.commit, v.built);
    println!("built with {}", v.rustc);
    println!("flavors {}", v.flavors.join(" "));
    println!("stage1 {}", v.stage1);
    Ok(ExitCode::SUCCESS)
}
