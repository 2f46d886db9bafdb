//! One module per command group: arguments in, one library call, output.

pub mod image;
pub mod version;
