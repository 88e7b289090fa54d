//! `tidings send` end to end against a local push service stand-in that answers each path
//! with a fixed status: exit codes, printed verdicts, what actually went over the wire, and
//! bad input refused before anything is sent.

mod common;

use common::{UserAgent, tidings};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tidings_crypto::vapid::{self, VapidKey};
use tidings_crypto::webpush::ReceivedEncoding;

/// One request as the stand-in received it.
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The canned answer for each path.
fn answer(path: &str, port: u16) -> String {
    let (status, headers, body) = match path.split('?').next().unwrap_or(path) {
        "/ok" => (
            "201 Created",
            format!("Location: http://127.0.0.1:{port}/m/msg-1\r\nTTL: 60\r\n"),
            String::new(),
        ),
        "/gone" => (
            "410 Gone",
            String::new(),
            r#"{"code":410,"errno":106,"error":"Gone","message":"Request did not validate"}"#.into(),
        ),
        "/busy" => ("429 Too Many Requests", "Retry-After: 120\r\n".into(), String::new()),
        "/large" => (
            "413 Payload Too Large",
            String::new(),
            r#"{"code":413,"errno":104,"error":"Payload Too Large","message":"Body is too large"}"#.into(),
        ),
        "/forbidden" => (
            "403 Forbidden",
            String::new(),
            "the key in the authorization header does not correspond to the sender ID".into(),
        ),
        "/unauthorized" => (
            "401 Unauthorized",
            "WWW-Authenticate: vapid\r\n".into(),
            r#"{"code":401,"errno":109,"error":"Unauthorized","message":"Invalid token"}"#.into(),
        ),
        _ => ("503 Service Unavailable", "Retry-After: 7\r\n".into(), String::new()),
    };
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Starts the stand-in on a free loopback port; every request it gets arrives on the channel.
fn push_service() -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            let len = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            stream.write_all(answer(&path, port).as_bytes()).unwrap();
            let _ = tx.send(Received { path, headers, body });
        }
    });
    (port, rx)
}

struct Setup {
    dir: tempdir::Dir,
    ua: UserAgent,
    key: VapidKey,
}

/// A scratch directory holding a VAPID key file and subscriptions for the stand-in's paths.
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!(
                "tidings-send-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Setup {
    fn new() -> Self {
        let dir = tempdir::Dir::new();
        let key = VapidKey::generate().unwrap();
        std::fs::write(dir.0.join("vapid.json"), serde_json::to_string(&key.to_key_file()).unwrap()).unwrap();
        Self { dir, ua: UserAgent::new(), key }
    }

    fn subscription(&self, port: u16, path: &str) -> String {
        let file = self.dir.0.join(format!("sub{}.json", path.replace('/', "-")));
        let endpoint = format!("http://127.0.0.1:{port}{path}");
        std::fs::write(&file, self.ua.subscription(&endpoint).to_string()).unwrap();
        file.to_str().unwrap().to_owned()
    }

    fn keys(&self) -> String {
        self.dir.0.join("vapid.json").to_str().unwrap().to_owned()
    }

    fn send(&self, subscription: &str, extra: &[&str]) -> (i32, String, String) {
        let out = tidings()
            .args(["send", "--subscription", subscription, "--vapid-keys", &self.keys()])
            .args(["--vapid-subject", "mailto:ops@example.com", "--timeout", "10"])
            .args(extra)
            .env_remove("TIDINGS_VAPID_PRIVATE_KEY")
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap(), text(&out.stdout), text(&out.stderr))
    }
}

#[test]
fn accepted_message_is_encrypted_signed_and_reported() {
    let (port, rx) = push_service();
    let s = Setup::new();
    let (code, stdout, _) = s.send(
        &s.subscription(port, "/ok"),
        &["--payload", "Hello, world", "--ttl", "60", "--urgency", "high", "--topic", "greeting"],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("201 Created\n"), "{stdout}");
    assert!(stdout.contains(&format!("Location: http://127.0.0.1:{port}/m/msg-1")), "{stdout}");
    assert!(stdout.contains("accepted"), "{stdout}");

    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got.path, "/ok");
    assert_eq!(
        (got.header("ttl"), got.header("urgency"), got.header("topic")),
        (Some("60"), Some("high"), Some("greeting"))
    );
    assert_eq!(got.header("content-encoding"), Some("aes128gcm"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let verified =
        vapid::verify(got.header("authorization").unwrap(), None, &format!("http://127.0.0.1:{port}"), now)
            .unwrap();
    assert_eq!(&verified.public_key, s.key.public_key());
    assert_eq!(s.ua.keys.decrypt(&got.body, ReceivedEncoding::Aes128gcm).unwrap(), b"Hello, world");
}

#[test]
fn every_answer_class_has_its_exit_code_and_explanation() {
    let (port, _rx) = push_service();
    let s = Setup::new();
    let cases: [(&str, i32, &[&str]); 6] = [
        ("/gone", 3, &["410 Gone", "errno 106: Request did not validate", "gone:", "delete it"]),
        ("/busy", 5, &["429 Too Many Requests", "Retry-After: 120 s", "try later"]),
        ("/large", 4, &["413 Payload Too Large", "errno 104: Body is too large", "too large"]),
        ("/forbidden", 4, &["403 Forbidden", "does not correspond to the sender ID", "tidings vapid check"]),
        (
            "/unauthorized",
            4,
            &["401 Unauthorized", "errno 109: Invalid token", "VAPID authentication failed"],
        ),
        ("/fail", 5, &["503 Service Unavailable", "Retry-After: 7 s", "try later"]),
    ];
    for (path, expected, words) in cases {
        let (code, stdout, stderr) = s.send(&s.subscription(port, path), &["--payload", "x"]);
        assert_eq!(code, expected, "{path}: {stdout}{stderr}");
        for word in words {
            assert!(stdout.contains(word), "{path}: {word:?} not in {stdout}");
        }
    }
}

#[test]
fn unreachable_service_means_try_later() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = Setup::new();
    let (code, stdout, _) = s.send(&s.subscription(port, "/ok"), &["--payload", "x"]);
    assert_eq!(code, 5, "{stdout}");
    assert!(stdout.contains("could not be reached"), "{stdout}");
}

#[test]
fn legacy_encoding_and_stdin_subscription() {
    let (port, rx) = push_service();
    let s = Setup::new();
    let sub = std::fs::read(s.subscription(port, "/ok")).unwrap();
    let mut child = tidings()
        .args(["send", "--subscription", "-", "--payload", "old style", "--encoding", "aesgcm"])
        .args(["--vapid-keys", &s.keys(), "--vapid-subject", "https://example.com/contact"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&sub).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let crypto_key = got.header("crypto-key").unwrap();
    let params =
        tidings_crypto::ece::aesgcm::EncryptionParams::parse(got.header("encryption").unwrap()).unwrap();
    let sender_public = tidings_crypto::ece::aesgcm::sender_key_from_crypto_key(crypto_key).unwrap();
    let plain = s.ua.keys.decrypt(&got.body, ReceivedEncoding::Aesgcm { params, sender_public }).unwrap();
    assert_eq!(plain, b"old style");
    assert!(got.header("authorization").unwrap().starts_with("WebPush "));
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let (port, rx) = push_service();
    let s = Setup::new();
    let good = s.subscription(port, "/ok");
    let write = |name: &str, text: &str| {
        let path = s.dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let not_json = write("bad.json", "{\"endpoint\": ");
    let short_key = write(
        "short.json",
        &format!(
            r#"{{"endpoint":"http://127.0.0.1:{port}/ok","keys":{{"p256dh":"BCVx","auth":"{}"}}}}"#,
            s.ua.auth()
        ),
    );
    let short_auth = write(
        "auth.json",
        &format!(
            r#"{{"endpoint":"http://127.0.0.1:{port}/ok","keys":{{"p256dh":"{}","auth":"AAAA"}}}}"#,
            s.ua.p256dh()
        ),
    );
    let big = "x".repeat(3994);
    let long_topic = "t".repeat(33);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--subscription", &not_json], "not PushSubscription JSON"),
        (vec!["--subscription", &short_key], "keys.p256dh must be a 65-byte"),
        (vec!["--subscription", &short_auth], "keys.auth must be 16 bytes"),
        (vec!["--subscription", "/nonexistent/sub.json"], "cannot read the subscription"),
        (vec!["--subscription", &good, "--payload", &big], "the payload is 3994 bytes"),
        (vec!["--subscription", &good, "--vapid-subject", "mailto:me@localhost"], "names a local host"),
        (vec!["--subscription", &good, "--vapid-subject", "me@example.com"], "must be a mailto: address"),
        (vec!["--subscription", &good, "--topic", &long_topic], "1 to 32 characters"),
        (vec!["--subscription", &good, "--urgency", "urgent"], "very-low, low, normal, high"),
        (vec!["--subscription", &good, "--ttl=-1"], "invalid value"),
        (vec!["--subscription", &good, "--vapid-keys", &not_json], "holds no usable VAPID key"),
        (vec!["--subscription", &good, "--ca-file", "/nonexistent/ca.pem"], "cannot read CA certificates"),
    ];
    for (args, message) in cases {
        let mut command = tidings();
        command.args(["send", "--vapid-keys", &s.keys(), "--vapid-subject", "mailto:ops@example.com"]);
        // Later flags win for single-valued options, so each case overrides the defaults.
        let out = command.args(&args).env_remove("TIDINGS_VAPID_PRIVATE_KEY").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {message:?} not in {stderr}");
    }
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "something was sent");
}

#[test]
fn private_key_from_the_environment_and_curl_output() {
    let s = Setup::new();
    let sub = s.subscription(9, "/ok");
    let private = tidings_crypto::b64::encode(&s.key.private_key_raw());
    let out = tidings()
        .args([
            "send",
            "--subscription",
            &sub,
            "--payload",
            "hi",
            "--vapid-subject",
            "mailto:ops@example.com",
            "--curl",
        ])
        .env("TIDINGS_VAPID_PRIVATE_KEY", &private)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("curl -sS -i -X POST 'http://127.0.0.1:9/ok'"), "{stdout}");
    assert!(stdout.contains(&format!(",k={}'", s.key.public_key_base64())), "{stdout}");
    assert!(stdout.contains("--data-binary @-"), "{stdout}");
    assert!(!stdout.contains(&private), "the private key must never be printed");
}

#[test]
fn verbose_masks_the_endpoint_and_the_token_signature() {
    let (port, _rx) = push_service();
    let s = Setup::new();
    let path = "/ok?secret-capability-token-0123456789";
    let sub = s.subscription(port, path);
    let (code, _, stderr) = s.send(&sub, &["--payload", "x", "--verbose"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("> POST http://127.0.0.1"), "{stderr}");
    assert!(!stderr.contains("0123456789"), "the endpoint leaked: {stderr}");
    assert!(stderr.contains("> authorization: vapid t=eyJ"), "{stderr}");
    assert!(stderr.contains(".…,k="), "the signature should be elided: {stderr}");
    assert!(stderr.contains("< 201 Created") && stderr.contains("< ttl: 60"), "{stderr}");
}
