//! One module per command group: arguments in, one library call, output.

pub mod fetch;
pub mod generate;
pub mod image;
pub mod inspect;
pub mod key;
pub mod logs;
pub mod metadata;
pub mod pods;
pub mod serve;
pub mod trust;
pub mod version;
pub mod vulndb;
