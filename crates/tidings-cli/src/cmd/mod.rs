//! The subcommands, one module each.

pub mod send;
pub mod vapid;
