//! The flags that say what to send and how to sign it, shared by `send` and `broadcast`.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tidings_crypto::vapid::{self, VapidKey, VapidSigner};
use tidings_crypto::webpush::ContentEncoding;
use tidings_sender::{ClientConfig, Message, PushClient};
use tidings_wire::{Topic, Urgency};

/// The message and its signature.
#[derive(Debug, Args)]
pub struct MessageArgs {
    /// The message text.
    #[arg(long, conflicts_with = "payload_file")]
    pub payload: Option<String>,
    /// Read the message from a file (any bytes), or - for stdin.
    #[arg(long, value_name = "FILE|-")]
    pub payload_file: Option<PathBuf>,
    /// Seconds the push service keeps the message while the browser is offline.
    #[arg(long, value_name = "SECONDS", default_value_t = tidings_wire::headers::DEFAULT_TTL)]
    pub ttl: u32,
    /// How urgently to deliver (devices on battery may defer low urgency).
    #[arg(long, value_parser = parse_urgency)]
    pub urgency: Option<Urgency>,
    /// Replaces a pending message with the same topic (1-32 characters of A-Z a-z 0-9 - _).
    #[arg(long, value_parser = parse_topic)]
    pub topic: Option<Topic>,
    /// Content encoding: aes128gcm (RFC 8291) or the legacy aesgcm.
    #[arg(long, value_enum, default_value_t = EncodingArg::Aes128gcm)]
    pub encoding: EncodingArg,
    /// Zero bytes to add inside the encryption, to hide the message length.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub padding: usize,
    /// VAPID keys: {"publicKey","privateKey"} JSON (as `tidings vapid generate --json` writes), or a PEM private key.
    /// Without it, the private key is read from TIDINGS_VAPID_PRIVATE_KEY.
    #[arg(long, value_name = "FILE", env = "TIDINGS_VAPID_KEYS")]
    pub vapid_keys: Option<PathBuf>,
    /// Contact for the push service's operator: mailto:you@example.com or https://example.com.
    #[arg(long, value_name = "URI", env = "TIDINGS_VAPID_SUBJECT")]
    pub vapid_subject: Option<String>,
    /// Seconds to wait for the push service's answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// Also trust the CA certificates in this PEM file (for a push service with a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// `--encoding`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EncodingArg {
    /// RFC 8291.
    Aes128gcm,
    /// The legacy draft scheme.
    Aesgcm,
}

fn parse_urgency(value: &str) -> Result<Urgency, String> {
    value.parse().map_err(|e: tidings_wire::headers::UrgencyError| e.to_string())
}

fn parse_topic(value: &str) -> Result<Topic, String> {
    value.parse().map_err(|e: tidings_wire::headers::TopicError| e.to_string())
}

impl MessageArgs {
    /// The message, with its payload read from `--payload` or `--payload-file`.
    pub fn message(&self) -> Result<Message> {
        let payload = match (&self.payload, &self.payload_file) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(path)) => read_bytes(path).context("cannot read the payload file")?,
            (None, None) => Vec::new(),
        };
        Ok(Message {
            payload: payload.into(),
            ttl: self.ttl,
            urgency: self.urgency,
            topic: self.topic.clone(),
            encoding: match self.encoding {
                EncodingArg::Aes128gcm => ContentEncoding::Aes128gcm,
                EncodingArg::Aesgcm => ContentEncoding::Aesgcm,
            },
            padding: self.padding,
        })
    }

    /// The VAPID signer from `--vapid-keys` or `TIDINGS_VAPID_PRIVATE_KEY`, with a subject
    /// that the strictest push service accepts; `None` when no key is given (unrestricted
    /// subscriptions).
    pub fn signer(&self) -> Result<Option<VapidSigner>> {
        let key = match &self.vapid_keys {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                VapidKey::parse(&text)
                    .with_context(|| format!("{} holds no usable VAPID key", path.display()))?
            }
            None => match std::env::var("TIDINGS_VAPID_PRIVATE_KEY") {
                Ok(text) => {
                    VapidKey::parse(&text).context("TIDINGS_VAPID_PRIVATE_KEY holds no usable VAPID key")?
                }
                Err(_) => {
                    if self.vapid_subject.is_some() {
                        bail!(
                            "--vapid-subject needs a key: give --vapid-keys FILE or set TIDINGS_VAPID_PRIVATE_KEY"
                        );
                    }
                    return Ok(None);
                }
            },
        };
        let Some(subject) = &self.vapid_subject else {
            bail!("VAPID needs a contact: add --vapid-subject mailto:you@example.com (or an https:// URL)");
        };
        vapid::validate_subject(subject)?;
        Ok(Some(VapidSigner::new(key, Some(subject.clone()))))
    }

    /// The push client, with `--timeout` and `--ca-file`.
    pub fn client(&self) -> Result<PushClient> {
        let extra_roots = super::ca_certificates(self.ca_file.as_deref())?;
        Ok(PushClient::new(ClientConfig {
            timeout: Duration::from_secs(self.timeout),
            extra_roots,
            ..Default::default()
        }))
    }
}

/// Whether a path argument means standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A file's bytes, or standard input's for `-`.
pub fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    if is_stdin(path) {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(path)
    }
}
