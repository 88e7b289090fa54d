//! `tidings send`: one message to one subscription, with a verdict a person can act on.

use super::message::{is_stdin, read_bytes};
use crate::exit::Code;
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tidings_sender::{Subscription, Verdict, prepare};
use tidings_wire::endpoint;

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
    #[command(flatten)]
    message: super::message::MessageArgs,
    /// Print the request and response headers on stderr (endpoint masked).
    #[arg(long, short)]
    verbose: bool,
    /// Print an equivalent curl command instead of sending (it contains the full endpoint and token).
    #[arg(long)]
    curl: bool,
}

pub fn run(args: SendArgs) -> Result<Code> {
    let stdin_users = [Some(args.subscription.as_path()), args.message.payload_file.as_deref()]
        .iter()
        .filter(|p| p.is_some_and(is_stdin))
        .count();
    if stdin_users > 1 {
        bail!("--subscription and --payload-file cannot both read stdin");
    }
    let subscription_text = read_text(&args.subscription).context("cannot read the subscription")?;
    let subscription =
        Subscription::parse(&subscription_text).context("the subscription cannot be sent to")?;
    let message = args.message.message()?;
    let signer = args.message.signer()?;
    let client = args.message.client()?;
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
