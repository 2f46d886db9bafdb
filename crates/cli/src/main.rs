//! `skiff`: the command line ([`skiff::main`]).

fn main() -> std::process::ExitCode {
    skiff::main()
}
