//! The subcommands, one module each.

pub mod listen;
pub mod send;
pub mod serve;
pub mod vapid;
