//! How fast requests are prepared: per message, one ephemeral P-256 key, one ECDH, the key
//! schedule, AES-GCM over the payload and the headers, with the VAPID token signed once per
//! audience. The floor is the two P-256 operations, measured here too.

use anyhow::{Context, Result, bail};
use aws_lc_rs::agreement::{self, ECDH_P256, UnparsedPublicKey};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tidings_crypto::b64;
use tidings_crypto::vapid::{VapidKey, VapidSigner};
use tidings_crypto::webpush::ReceiverKeys;
use tidings_sender::{Message, Subscription, prepare};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to measure each configuration in each round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Rounds; every configuration is measured once per round, interleaved, and the median
    /// is reported, so that drift in the machine's speed hits all of them alike.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Skip npm web-push (which needs `scripts/install-test-deps`).
    #[arg(long)]
    no_peer: bool,
    /// Instead of timing, call the floor and `prepare` this many times each on one thread
    /// (for `valgrind --tool=callgrind`, which counts instructions whatever the load).
    #[arg(long, value_name = "N")]
    count: Option<usize>,
}

pub fn run(args: &Args) -> Result<()> {
    let duration = Duration::from_secs_f64(args.seconds);
    let subscriptions = subscriptions(1000)?;
    let signer = VapidSigner::new(VapidKey::generate()?, Some("mailto:bench@example.com".into()));
    let message = Message::new(vec![b'x'; args.payload]);
    println!(
        "prepare: encrypt {} bytes (aes128gcm) + VAPID, {} subscriptions on 4 origins, {} rounds of {} s",
        args.payload,
        subscriptions.len(),
        args.rounds,
        args.seconds
    );

    let floor_op = |i: usize| p256_floor(&subscriptions[i % subscriptions.len()]);
    let prepare_op = |i: usize| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let request = prepare(&subscriptions[i % subscriptions.len()], &message, Some(&signer), now).unwrap();
        std::hint::black_box(request);
    };
    if let Some(count) = args.count {
        (0..count).for_each(floor_op);
        (0..count).for_each(prepare_op);
        println!("called p256_floor and prepare {count} times each");
        return Ok(());
    }

    // What a user agent pays per message: decrypting one (one ECDH and the key schedule).
    let receiver = ReceiverKeys::generate()?;
    let body = tidings_crypto::webpush::encrypt(
        &receiver.subscription_keys(),
        &vec![b'x'; args.payload],
        tidings_crypto::webpush::ContentEncoding::Aes128gcm,
        0,
    )?
    .body;
    let decrypt_op = |_: usize| {
        let plain = receiver.decrypt(&body, tidings_crypto::webpush::ReceivedEncoding::Aes128gcm).unwrap();
        std::hint::black_box(plain);
    };
    let (mut floor, mut one, mut two, mut peer, mut decrypt) = (vec![], vec![], vec![], vec![], vec![]);
    for round in 1..=args.rounds {
        floor.push(measure(1, duration, floor_op));
        one.push(measure(1, duration, prepare_op));
        two.push(measure(2, duration, prepare_op));
        decrypt.push(measure(1, duration, decrypt_op));
        if !args.no_peer {
            peer.push(web_push(args.seconds)?);
        }
        let last = |v: &Vec<f64>| v.last().copied().unwrap_or(f64::NAN);
        println!(
            "  round {round}: floor {:.0}/s, tidings 1 thread {:.0}/s, 2 threads {:.0}/s, npm web-push {:.0}/s",
            last(&floor),
            last(&one),
            last(&two),
            last(&peer)
        );
    }
    let (floor, one, two) = (median(floor), median(one), median(two));
    println!("medians:");
    println!("  floor (P-256 keygen + ECDH only), 1 thread: {floor:>8.0}/s");
    println!(
        "  tidings, 1 thread:                          {one:>8.0}/s  ({:.0}% of the floor)",
        100.0 * one / floor
    );
    println!("  tidings, 2 threads:                         {two:>8.0}/s  ({:.2}x one thread)", two / one);
    println!("  decrypting (user agent side), 1 thread:     {:>8.0}/s", median(decrypt));
    if !peer.is_empty() {
        let peer = median(peer);
        println!("  npm web-push, 1 thread:                     {peer:>8.0}/s");
        println!("  tidings / npm web-push, 1 thread:           {:>8.1}x", one / peer);
    }
    Ok(())
}

/// The two P-256 operations every message needs: a fresh key pair and the ECDH with the
/// subscriber's key. Not inlined, so callgrind reports its cost per call.
#[inline(never)]
fn p256_floor(subscription: &Subscription) {
    let private = agreement::PrivateKey::generate(&ECDH_P256).expect("generate");
    let _ = private.compute_public_key().expect("public key");
    let peer = subscription.keys().p256dh;
    agreement::agree(&private, UnparsedPublicKey::new(&ECDH_P256, peer.as_bytes()), (), |_| Ok(())).unwrap();
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `work(i)` on `threads` threads for `duration`; returns calls per second in total.
fn measure(threads: usize, duration: Duration, work: impl Fn(usize) + Sync) -> f64 {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let total: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, work) = (&stop, &work);
                scope.spawn(move || {
                    let mut count = 0;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..64 {
                            work(t * 1_000_003 + count);
                            count += 1;
                        }
                    }
                    count
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn subscriptions(count: usize) -> Result<Vec<Subscription>> {
    (0..count)
        .map(|i| {
            let keys = ReceiverKeys::generate()?.subscription_keys();
            let json = serde_json::json!({
                "endpoint": format!("https://push{}.example.net/wpush/v2/{i}", i % 4),
                "keys": {"p256dh": b64::encode(keys.p256dh.as_bytes()), "auth": b64::encode(&keys.auth)},
            });
            Ok(Subscription::parse(&json.to_string())?)
        })
        .collect()
}

fn web_push(seconds: f64) -> Result<f64> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/web-push-prepare.js");
    let out = Command::new("node")
        .arg(&script)
        .arg(seconds.to_string())
        .output()
        .context("running node (install Node.js, then scripts/install-test-deps)")?;
    if !out.status.success() {
        bail!(
            "npm web-push benchmark failed (run scripts/install-test-deps first): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let result: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(result["requests"].as_f64().unwrap_or(0.0) / result["seconds"].as_f64().unwrap_or(1.0))
}
