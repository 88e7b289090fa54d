//! `tidings listen`: a user agent on the command line. It subscribes at a push service,
//! prints (or hands to a command) every message that arrives, and acks it once handled.

use crate::exit::Code;
use anyhow::{Context, Result};
use base64::Engine as _;
use clap::Args;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use tidings_agent::listener::{self, Delivery, Event, Options};
use tidings_crypto::b64;
use tokio::io::AsyncWriteExt as _;

#[derive(Debug, Args)]
#[command(
    after_help = "On first run it subscribes and shows the subscription (PushSubscription JSON) to give to \
any Web Push sender; later runs resume it from the state file.\n\n\
Example:\n  tidings listen --server ws://127.0.0.1:8080/ --subscription-out sub.json\n  \
tidings send --subscription sub.json --payload 'Hello' --vapid-keys vapid.json --vapid-subject mailto:you@example.com"
)]
pub struct ListenArgs {
    /// The push service's WebSocket URL (ws:// or wss://), e.g. ws://127.0.0.1:8080/.
    #[arg(long, env = "TIDINGS_SERVER", value_name = "URL")]
    server: String,
    /// Where the uaid, subscription and private keys are kept (mode 0600)
    /// [default: $XDG_STATE_HOME/tidings/listen.json, or ~/.local/state/tidings/listen.json].
    #[arg(long, env = "TIDINGS_STATE", value_name = "FILE")]
    state: Option<PathBuf>,
    /// Restrict the subscription to this applicationServerKey (base64url, padding optional):
    /// only senders holding its private key can send.
    #[arg(long, value_name = "KEY")]
    application_server_key: Option<String>,
    /// Also write the PushSubscription JSON to this file (again whenever the endpoint changes).
    #[arg(long, value_name = "FILE")]
    subscription_out: Option<PathBuf>,
    /// One JSON object per message: {"channelID","version","text" or "data","received_at"}.
    #[arg(long)]
    json: bool,
    /// Run this shell command for each message, with the payload on its standard input and
    /// TIDINGS_CHANNEL_ID, TIDINGS_VERSION, TIDINGS_RECEIVED_AT in its environment; the
    /// message is acked only if it exits 0 (otherwise it is delivered again).
    #[arg(long, value_name = "COMMAND")]
    exec: Option<String>,
    /// Remove the subscriptions in the state file from the push service, then exit.
    #[arg(long)]
    unsubscribe: bool,
    /// Also trust the CA certificates in this PEM file (for a wss:// service with a private CA).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

fn default_state() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("tidings/listen.json")
}

pub fn run(args: ListenArgs) -> Result<Code> {
    let key = match &args.application_server_key {
        Some(key) => {
            let bytes = b64::decode(key).context("--application-server-key is not base64url")?;
            tidings_crypto::webpush::PublicKey::from_bytes(&bytes)
                .context("--application-server-key is not a 65-byte P-256 public key")?;
            Some(b64::encode(&bytes))
        }
        None => None,
    };
    let extra_roots = super::ca_certificates(args.ca_file.as_deref())?;
    let options = Options {
        server: args.server.clone(),
        state_path: args.state.clone().unwrap_or_else(default_state),
        application_server_key: key,
        ping_interval: Duration::from_secs(240),
        extra_roots,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        if args.unsubscribe {
            let removed = listener::unsubscribe(&options).await?;
            eprintln!("removed {} subscription(s) from {}", removed.len(), options.server);
            return Ok(Code::Ok);
        }
        eprintln!("state: {}", options.state_path.display());
        let (events, mut incoming) = tokio::sync::mpsc::channel(16);
        let listening = tokio::spawn(listener::run(options, events, ctrl_c()));
        while let Some(event) = incoming.recv().await {
            handle(&args, event).await?;
        }
        listening.await??;
        Ok(Code::Ok)
    })
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

async fn handle(args: &ListenArgs, event: Event) -> Result<()> {
    match event {
        Event::Subscribed(subscriptions) => {
            for subscription in subscriptions {
                let json =
                    serde_json::to_string(&subscription.push_subscription().map_err(anyhow::Error::msg)?)?;
                eprintln!("subscribed; give this subscription to any Web Push sender:\n{json}");
                if let Some(path) = &args.subscription_out {
                    std::fs::write(path, format!("{json}\n"))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
            }
        }
        Event::Connected { .. } => eprintln!("connected to {}", args.server),
        Event::Disconnected { error, retry_in } => {
            eprintln!("disconnected: {error}; reconnecting in {:.1} s", retry_in.as_secs_f64());
        }
        Event::Undecryptable { reason, .. } => {
            eprintln!("a message could not be decrypted ({reason}); acked with code 101")
        }
        Event::Message(delivery) => {
            let handled = match &args.exec {
                Some(command) => exec(command, &delivery).await,
                None => print(args.json, &delivery),
            };
            let _ = delivery.ack.send(handled);
        }
    }
    Ok(())
}

/// Prints the message; always handled.
fn print(json: bool, delivery: &Delivery) -> bool {
    let received_at = humantime::format_rfc3339_millis(delivery.received_at).to_string();
    let text = std::str::from_utf8(&delivery.payload).ok();
    let line = if json {
        let mut object = serde_json::json!({"channelID": delivery.channel_id, "version": delivery.version, "received_at": received_at});
        match text {
            Some(text) => object["text"] = text.into(),
            None => object["data"] = b64::encode(&delivery.payload).into(),
        }
        object.to_string()
    } else {
        match text {
            Some(text) => text.to_owned(),
            None => {
                format!("[{} bytes, not UTF-8] {}", delivery.payload.len(), b64::encode(&delivery.payload))
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_ok()
}

/// Runs the command with the payload on stdin; handled when it exits 0.
async fn exec(command: &str, delivery: &Delivery) -> bool {
    let child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .env("TIDINGS_CHANNEL_ID", &delivery.channel_id)
        .env("TIDINGS_VERSION", &delivery.version)
        .env("TIDINGS_RECEIVED_AT", humantime::format_rfc3339_millis(delivery.received_at).to_string())
        .env(
            "TIDINGS_PAYLOAD_BASE64URL",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&delivery.payload),
        )
        .stdin(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot run the --exec command: {e}");
            return false;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is fine.
        let _ = stdin.write_all(&delivery.payload).await;
    }
    match child.wait().await {
        Ok(status) if status.success() => true,
        Ok(status) => {
            eprintln!("the --exec command failed ({status}); the message will be delivered again");
            false
        }
        Err(e) => {
            eprintln!("the --exec command failed ({e}); the message will be delivered again");
            false
        }
    }
}
