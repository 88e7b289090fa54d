//! `tidings vapid`: make a key pair, and check one against a subscription's key.

use crate::exit::Code;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use tidings_crypto::b64;
use tidings_crypto::vapid::VapidKey;

#[derive(Debug, Subcommand)]
pub enum VapidCommand {
    /// Print a new VAPID key pair.
    ///
    /// Without options, prints both keys in words. Give the public key to browsers as the
    /// applicationServerKey; keep the private key secret.
    Generate(GenerateArgs),
    /// Say whether subscriptions made with an applicationServerKey can be sent to with
    /// these keys (a mismatch is the usual cause of "403 Forbidden" from push services).
    ///
    /// Exits 0 when they match, 1 when they do not.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Print {"publicKey":"...","privateKey":"..."} (base64url), the format npm web-push uses.
    #[arg(long, conflicts_with = "pem")]
    json: bool,
    /// Print the private key as a PKCS#8 PEM document.
    #[arg(long)]
    pem: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The key file: {"publicKey","privateKey"} JSON, a PEM private key, or a raw base64url private key.
    #[arg(long, value_name = "FILE")]
    keys: PathBuf,
    /// The applicationServerKey the page subscribed with (base64url, padding optional).
    #[arg(long, value_name = "KEY")]
    application_server_key: String,
}

pub fn run(command: VapidCommand) -> Result<Code> {
    match command {
        VapidCommand::Generate(args) => generate(&args),
        VapidCommand::Check(args) => check(&args),
    }
}

fn generate(args: &GenerateArgs) -> Result<Code> {
    let key = VapidKey::generate()?;
    if args.json {
        println!("{}", serde_json::to_string(&key.to_key_file())?);
    } else if args.pem {
        print!("{}", key.to_pem());
    } else {
        let file = key.to_key_file();
        println!("Public key (applicationServerKey, give it to browsers):\n{}\n", file.public_key);
        println!("Private key (keep it secret):\n{}", file.private_key);
    }
    Ok(Code::Ok)
}

fn check(args: &CheckArgs) -> Result<Code> {
    let text = std::fs::read_to_string(&args.keys)
        .with_context(|| format!("cannot read {}", args.keys.display()))?;
    let key = VapidKey::parse(&text)
        .with_context(|| format!("{} holds no usable VAPID key", args.keys.display()))?;
    let subscribed =
        b64::decode(&args.application_server_key).context("the application server key is not base64url")?;
    if subscribed.as_slice() == key.public_key() {
        println!(
            "match: subscriptions made with this applicationServerKey accept messages signed with these keys"
        );
        Ok(Code::Ok)
    } else {
        println!(
            "MISMATCH: these keys' public key is {}\n\
             but the subscription was made with {}.\n\
             Push services will refuse every message (403, or 401 at Mozilla). Send with the keys whose public key\n\
             the page subscribed with, or have the page subscribe again with this public key.",
            key.public_key_base64(),
            b64::encode(&subscribed)
        );
        Ok(Code::CheckFailed)
    }
}
