use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    println!("skiff version {}", env!("CARGO_PKG_VERSION"));
    println!("appc version {}", skiff_spec::APPC_SPEC_VERSION);
    Ok(ExitCode::SUCCESS)
}
