//! The subcommands, one module each.

pub mod broadcast;
pub mod listen;
pub mod message;
pub mod send;
pub mod serve;
pub mod vapid;

use anyhow::{Context, Result};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use std::path::Path;

/// The CA certificates of a `--ca-file` (none without one).
pub fn ca_certificates(path: Option<&Path>) -> Result<Vec<CertificateDer<'static>>> {
    match path {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read CA certificates from {}", path.display())),
        None => Ok(Vec::new()),
    }
}
