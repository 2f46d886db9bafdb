//! `skiff`: the small binary of pod starts, which runs the others in
//! `skiff-full` ([`skiff::front`]).

fn main() -> std::process::ExitCode {
    skiff::front::main()
}
