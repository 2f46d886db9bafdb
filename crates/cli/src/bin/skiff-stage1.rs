//! `skiff-stage1`: turns a prepared pod directory into running, isolated
//! apps (see docs/stage1.md). The program lives in the `skiff-stage1`
//! library; this binary is built beside `skiff` so the two always travel
//! together.

fn main() -> std::process::ExitCode {
    skiff_stage1::entry::main()
}
