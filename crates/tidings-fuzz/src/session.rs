//! The push service's sans-IO user-agent session (`tidings_push::session`), driven the way
//! its WebSocket shell drives it, with time and the node's broadcasts as inputs too.

use std::time::{Duration, Instant};
use tidings_push::broadcast::Table;
use tidings_push::session::{Command, Identity, Registration, Session, Step};
use tidings_store::Message;
use tidings_wire::ws::ClientMessage;
use tidings_wire::{ChannelId, Uaid};

/// One line per event. A line starting with `#` is the world acting: `#t<secs>` lets time
/// pass, `#d<hex id>` delivers a message, `#b<id>=<version>` sets a broadcast. Any other line
/// is a text frame from the user agent.
///
/// Properties: no panic; every frame the session writes is JSON; a frame it parses writes
/// back (`to_json`) to one that parses to the same; hello makes the session that user
/// agent's; a message is never in flight twice, nor sent again just after its ack; a refusal
/// closes with 1008 or 1013.
pub fn push_session(data: &[u8]) {
    let start = Instant::now();
    let mut now = start;
    let mut session = Session::new();
    let mut table = Table::default();
    let mut rest = data;
    while !rest.is_empty() {
        let (line, after) = crate::split_line(rest);
        rest = after;
        let line = String::from_utf8_lossy(line);
        if let Some(world) = line.strip_prefix('#') {
            act(world, &mut session, &mut table, &mut now);
            continue;
        }
        check_reparse(&line);
        let step = match session.receive(&line, now, &table) {
            Ok(step) => step,
            Err(violation) => {
                assert!(matches!(violation.code, 1008 | 1013), "close code {}", violation.code);
                return;
            }
        };
        match step {
            Step::Reply(frame) => json(&frame),
            Step::Nothing => {}
            Step::Do(Command::Hello { uaid, broadcasts }) => {
                let identity = session.identify(uaid, || Ok(()), Uaid([7; 16]));
                let uaid = match identity.expect("allowed") {
                    Identity::Resumed(uaid) | Identity::Created(uaid) => uaid,
                };
                json(&session.hello_reply(uaid, &broadcasts, &table));
                assert_eq!(session.uaid(), Some(uaid));
            }
            Step::Do(Command::Register { channel_id, .. }) => {
                let outcome = Registration::Endpoint("https://push.example/wpush/v2/x".into());
                json(&Session::register_reply(channel_id, outcome));
            }
            Step::Do(Command::Unregister { channel_id }) => {
                json(&Session::unregister_reply(channel_id, true))
            }
            Step::Do(Command::Ack(acked)) => {
                let ids: Vec<u64> = acked.iter().map(|(_, id)| *id).collect();
                session.acked(ids.iter().copied(), now);
                for id in ids {
                    assert_eq!(
                        session.notification(&message(id), now),
                        None,
                        "{id:x} sent again after its ack"
                    );
                }
            }
        }
    }
}

/// What the rest of the node does: time passes, a message arrives, a broadcast changes.
fn act(world: &str, session: &mut Session, table: &mut Table, now: &mut Instant) {
    if let Some(secs) = world.strip_prefix('t') {
        *now += Duration::from_secs(secs.parse::<u16>().map_or(1, u64::from));
    } else if let Some(id) = world.strip_prefix('d') {
        let Ok(id) = u64::from_str_radix(id, 16) else { return };
        if let Some(frame) = session.notification(&message(id), *now) {
            json(&frame);
            assert_eq!(session.notification(&message(id), *now), None, "{id:x} in flight twice");
        }
    } else if let Some((id, version)) = world.strip_prefix('b').and_then(|b| b.split_once('='))
        && table.set(id, version).unwrap_or(false)
        && let Some(frame) = session.broadcast_news(table)
    {
        json(&frame);
    }
}

/// A frame the session may parse writes back to text that parses to the same thing.
fn check_reparse(text: &str) {
    let Ok(parsed) = ClientMessage::parse(text) else { return };
    let written = parsed.to_json();
    let again = ClientMessage::parse(&written).expect("to_json writes a frame that parses");
    assert_eq!(again.to_json(), written, "to_json is not stable");
}

fn json(frame: &str) {
    assert!(serde_json::from_str::<serde_json::Value>(frame).is_ok(), "not JSON: {frame}");
}

fn message(id: u64) -> Message {
    Message {
        id,
        channel_id: ChannelId([1; 16]),
        expires_at: u64::MAX,
        topic: None,
        body: vec![1, 2, 3],
        encoding: Some("aes128gcm".into()),
        encryption: None,
        crypto_key: None,
    }
}
