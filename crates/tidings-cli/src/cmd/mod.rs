//! The subcommands, one module each.

pub mod broadcast;
pub mod hub;
pub mod listen;
pub mod message;
pub mod send;
pub mod serve;
pub mod vapid;

use anyhow::{Context, Result, bail};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use std::net::SocketAddr;
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

/// The `--public-url` given (an http(s) origin, without a trailing slash), or `None` to
/// derive it from the listen address, which only works for a specific address. `reached`
/// says who uses the URL, for the error.
pub fn public_url(given: Option<String>, listen: SocketAddr, reached: &str) -> Result<Option<String>> {
    match given {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Ok(Some(url.trim_end_matches('/').to_owned()))
        }
        Some(_) => bail!("--public-url must be an http:// or https:// origin, like https://example.com"),
        None if listen.ip().is_unspecified() => {
            bail!("listening on {listen} needs --public-url: the origin {reached}")
        }
        None => Ok(None),
    }
}
