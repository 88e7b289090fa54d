//! `tidings send`: one message to one subscription, with a verdict a person can act on.

use crate::exit::Code;
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::{Args, ValueEnum};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tidings_crypto::vapid::{self, VapidKey, VapidSigner};
use tidings_crypto::webpush::ContentEncoding;
use tidings_sender::{ClientConfig, Message, PushClient, Subscription, Verdict, prepare};
use tidings_wire::{Topic, Urgency, endpoint};

/// Exit status: 0 accepted, 2 usage or input error (nothing sent), 3 subscription gone
/// (delete it), 4 rejected (fix the request), 5 try later.
#[derive(Debug, Args)]
#[command(
    args_override_self = true,
    after_help = "Exit status: 0 accepted (201/202), 2 usage or input error (nothing was sent), \
3 subscription gone (404/410: delete it), 4 rejected (400/401/403/413: fix the request), \
5 try later (429/5xx or no answer).\n\n\
Example:\n  tidings send --subscription sub.json --vapid-keys vapid.json \\\n    --vapid-subject mailto:ops@example.com --payload 'Hello'"
)]
pub struct SendArgs {
    /// The PushSubscription JSON ({"endpoint","keys":{"p256dh","auth"}}), or - for stdin.
    #[arg(long, value_name = "FILE|-")]
    subscription: PathBuf,
    /// The message text.
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Read the message from a file (any bytes), or - for stdin.
    #[arg(long, value_name = "FILE|-")]
    payload_file: Option<PathBuf>,
    /// Seconds the push service keeps the message while the browser is offline.
    #[arg(long, value_name = "SECONDS", default_value_t = tidings_wire::headers::DEFAULT_TTL)]
    ttl: u32,
    /// How urgently to deliver (devices on battery may defer low urgency).
    #[arg(long, value_parser = parse_urgency)]
    urgency: Option<Urgency>,
    /// Replaces a pending message with the same topic (1-32 characters of A-Z a-z 0-9 - _).
    #[arg(long, value_parser = parse_topic)]
    topic: Option<Topic>,
    /// Content encoding: aes128gcm (RFC 8291) or the legacy aesgcm.
    #[arg(long, value_enum, default_value_t = EncodingArg::Aes128gcm)]
    encoding: EncodingArg,
    /// Zero bytes to add inside the encryption, to hide the message length.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    padding: usize,
    /// VAPID keys: {"publicKey","privateKey"} JSON (as `tidings vapid generate --json` writes), or a PEM private key.
    /// Without it, the private key is read from TIDINGS_VAPID_PRIVATE_KEY.
    #[arg(long, value_name = "FILE", env = "TIDINGS_VAPID_KEYS")]
    vapid_keys: Option<PathBuf>,
    /// Contact for the push service's operator: mailto:you@example.com or https://example.com.
    #[arg(long, value_name = "URI", env = "TIDINGS_VAPID_SUBJECT")]
    vapid_subject: Option<String>,
    /// Seconds to wait for the push service's answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
    /// Also trust the CA certificates in this PEM file (for a push service with a private CA).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Print the request and response headers on stderr (endpoint masked).
    #[arg(long, short)]
    verbose: bool,
    /// Print an equivalent curl command instead of sending (it contains the full endpoint and token).
    #[arg(long)]
    curl: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EncodingArg {
    Aes128gcm,
    Aesgcm,
}

fn parse_urgency(value: &str) -> Result<Urgency, String> {
    value.parse().map_err(|e: tidings_wire::headers::UrgencyError| e.to_string())
}

fn parse_topic(value: &str) -> Result<Topic, String> {
    value.parse().map_err(|e: tidings_wire::headers::TopicError| e.to_string())
}

pub fn run(args: SendArgs) -> Result<Code> {
    let stdin_users = [Some(args.subscription.as_path()), args.payload_file.as_deref()]
        .iter()
        .filter(|p| p.is_some_and(is_stdin))
        .count();
    if stdin_users > 1 {
        bail!("--subscription and --payload-file cannot both read stdin");
    }
    let subscription_text = read_text(&args.subscription).context("cannot read the subscription")?;
    let subscription =
        Subscription::parse(&subscription_text).context("the subscription cannot be sent to")?;
    let payload = match (&args.payload, &args.payload_file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(path)) => read_bytes(path).context("cannot read the payload file")?,
        (None, None) => Vec::new(),
    };
    let signer = signer(&args)?;
    let extra_roots = super::ca_certificates(args.ca_file.as_deref())?;
    let message = Message {
        payload: payload.into(),
        ttl: args.ttl,
        urgency: args.urgency,
        topic: args.topic.clone(),
        encoding: match args.encoding {
            EncodingArg::Aes128gcm => ContentEncoding::Aes128gcm,
            EncodingArg::Aesgcm => ContentEncoding::Aesgcm,
        },
        padding: args.padding,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let request = prepare(&subscription, &message, signer.as_ref(), now)?;

    if args.curl {
        println!("{}", curl_command(&request));
        return Ok(Code::Ok);
    }
    if args.verbose {
        eprintln!("> POST {}", endpoint::mask(&request.uri().to_string()));
        for (name, value) in request.headers() {
            eprintln!("> {name}: {}", shown_header(name.as_str(), value.to_str().unwrap_or("<binary>")));
        }
        eprintln!("> ({} bytes of body)", request.body().len());
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = PushClient::new(ClientConfig {
        timeout: Duration::from_secs(args.timeout),
        extra_roots,
        ..Default::default()
    });
    let response = match runtime.block_on(client.send(request)) {
        Ok(response) => response,
        Err(error) => {
            println!("no answer from {}: {error}", subscription.audience());
            println!("try later: the push service could not be reached");
            return Ok(Code::TryLater);
        }
    };
    if args.verbose {
        eprintln!("< {}", response.status);
        for (name, value) in &response.headers {
            eprintln!("< {name}: {}", value.to_str().unwrap_or("<binary>"));
        }
    }
    report(&response)
}

/// Prints status, Location and the verdict; returns the exit code for the verdict.
fn report(response: &tidings_sender::Response) -> Result<Code> {
    println!("{}", response.status);
    if let Some(location) = &response.location {
        println!("Location: {location}");
    }
    if let Some(error) = &response.error {
        match (error.errno, &error.message) {
            (Some(errno), Some(message)) => println!("errno {errno}: {message}"),
            (Some(errno), None) => println!("errno {errno}"),
            (None, Some(message)) => println!("{message}"),
            (None, None) => {}
        }
    }
    if let Some(retry_after) = response.retry_after {
        println!("Retry-After: {} s", retry_after.as_secs());
    }
    match response.ttl {
        Some(ttl) if response.verdict == Verdict::Accepted => {
            println!("{} (kept for up to {ttl} s)", response.explanation());
        }
        _ => println!("{}", response.explanation()),
    }
    Ok(match response.verdict {
        Verdict::Accepted => Code::Ok,
        Verdict::Gone => Code::Gone,
        Verdict::Rejected => Code::Rejected,
        Verdict::RetryLater => Code::TryLater,
    })
}

/// The VAPID signer from `--vapid-keys` or `TIDINGS_VAPID_PRIVATE_KEY`, with a subject that
/// the strictest push service accepts; `None` when no key is given (unrestricted subscriptions).
fn signer(args: &SendArgs) -> Result<Option<VapidSigner>> {
    let key = match &args.vapid_keys {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            VapidKey::parse(&text).with_context(|| format!("{} holds no usable VAPID key", path.display()))?
        }
        None => match std::env::var("TIDINGS_VAPID_PRIVATE_KEY") {
            Ok(text) => {
                VapidKey::parse(&text).context("TIDINGS_VAPID_PRIVATE_KEY holds no usable VAPID key")?
            }
            Err(_) => {
                if args.vapid_subject.is_some() {
                    bail!(
                        "--vapid-subject needs a key: give --vapid-keys FILE or set TIDINGS_VAPID_PRIVATE_KEY"
                    );
                }
                return Ok(None);
            }
        },
    };
    let Some(subject) = &args.vapid_subject else {
        bail!("VAPID needs a contact: add --vapid-subject mailto:you@example.com (or an https:// URL)");
    };
    vapid::validate_subject(subject)?;
    Ok(Some(VapidSigner::new(key, Some(subject.clone()))))
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    if is_stdin(path) {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(path)
    }
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = read_bytes(path).with_context(|| format!("{}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))
}

/// Header values as shown in `--verbose`: the token's signature is left out, so the output
/// can be pasted into a bug report; the claims stay readable.
fn shown_header(name: &str, value: &str) -> String {
    if name == "authorization" {
        let hide = |token: &str| {
            token.rsplit_once('.').map_or("…".to_owned(), |(signed, _)| format!("{signed}.…"))
        };
        if let Some(rest) = value.strip_prefix("vapid t=") {
            let (token, key) = rest.split_once(",k=").unwrap_or((rest, ""));
            return format!("vapid t={},k={key}", hide(token));
        }
        if let Some(token) = value.strip_prefix("WebPush ") {
            return format!("WebPush {}", hide(token));
        }
    }
    value.to_owned()
}

/// A shell command that sends the same request with curl; the body travels as base64.
fn curl_command(request: &http::Request<bytes::Bytes>) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut command = String::new();
    if !request.body().is_empty() {
        let body = base64::engine::general_purpose::STANDARD.encode(request.body());
        command.push_str(&format!("echo {} | base64 -d | ", quote(&body)));
    }
    command.push_str(&format!("curl -sS -i -X POST {}", quote(&request.uri().to_string())));
    for (name, value) in request.headers() {
        if name == http::header::CONTENT_LENGTH {
            continue;
        }
        command
            .push_str(&format!(" \\\n  -H {}", quote(&format!("{name}: {}", value.to_str().unwrap_or("")))));
    }
    if request.body().is_empty() {
        command.push_str(" \\\n  -H 'content-length: 0'");
    } else {
        command.push_str(" \\\n  --data-binary @-");
    }
    command
}
