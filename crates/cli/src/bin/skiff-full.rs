//! `skiff-full`: every command of skiff's command line ([`skiff::main`]).
//! `skiff` runs pod starts itself and executes this for the rest
//! ([`skiff::front`]); it is installed beside `skiff`.

fn main() -> std::process::ExitCode {
    skiff::main()
}
