//! Encryption interop, both directions, both schemes: bodies Tidings encrypts are decrypted
//! by http_ece (npm and PyPI); bodies npm web-push and pywebpush encrypt are decrypted by
//! Tidings.

mod common;

use common::{UserAgent, node, python};
use serde_json::{Value, json};
use tidings_crypto::b64;
use tidings_crypto::ece::aesgcm;
use tidings_crypto::webpush::{self, ContentEncoding, ReceivedEncoding};

const ENDPOINT: &str = "https://push.example.net/wpush/v2/interop";
const VAPID_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
const VAPID_PUBLIC: &str =
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";

fn payloads() -> Vec<Vec<u8>> {
    vec![
        b"Hello from Tidings".to_vec(),
        "unicode: \u{1F514} d\u{e9}j\u{e0} vu".as_bytes().to_vec(),
        (0..=255u8).collect(),
        vec![b'x'; webpush::MAX_PLAINTEXT_LEN],
    ]
}

/// The decryption input the helpers take for a body Tidings made.
fn decrypt_input(ua: &UserAgent, out: &webpush::Encrypted) -> Value {
    let mut input = json!({
        "encoding": out.encoding.as_str(),
        "body": b64::encode(&out.body),
        "privateKey": ua.private_key(),
        "auth": ua.auth(),
    });
    if out.encoding == ContentEncoding::Aesgcm {
        let params = aesgcm::EncryptionParams::parse(out.encryption_header.as_deref().unwrap()).unwrap();
        let dh = aesgcm::sender_key_from_crypto_key(out.crypto_key_dh.as_deref().unwrap()).unwrap();
        input["salt"] = json!(b64::encode(&params.salt));
        input["dh"] = json!(b64::encode(&dh));
    }
    input
}

fn check_decrypted_by(decrypt: fn(&str, &Value) -> Result<Value, String>) {
    let ua = UserAgent::new();
    for encoding in [ContentEncoding::Aes128gcm, ContentEncoding::Aesgcm] {
        for (i, payload) in payloads().iter().enumerate() {
            // Padding exercises the record layout; the last payload already fills the body.
            let padding = if i == 0 { 100 } else { 0 };
            let out = webpush::encrypt(&ua.keys.subscription_keys(), payload, encoding, padding).unwrap();
            let result = decrypt("decrypt", &decrypt_input(&ua, &out))
                .unwrap_or_else(|e| panic!("{encoding:?} payload {i}: {e}"));
            assert_eq!(
                b64::decode(result["plaintext"].as_str().unwrap()).unwrap(),
                *payload,
                "{encoding:?} {i}"
            );
        }
    }
}

#[test]
fn npm_http_ece_decrypts_what_tidings_encrypts() {
    check_decrypted_by(node);
}

#[test]
fn python_http_ece_decrypts_what_tidings_encrypts() {
    check_decrypted_by(python);
}

/// Decrypts a request another library built, as a Tidings user agent would.
fn tidings_decrypts(ua: &UserAgent, request: &Value) -> Vec<u8> {
    let headers = &request["headers"];
    let body = b64::decode(request["body"].as_str().unwrap()).unwrap();
    let encoding = match headers["content-encoding"].as_str().unwrap() {
        "aes128gcm" => ReceivedEncoding::Aes128gcm,
        "aesgcm" => ReceivedEncoding::Aesgcm {
            params: aesgcm::EncryptionParams::parse(headers["encryption"].as_str().unwrap()).unwrap(),
            sender_public: aesgcm::sender_key_from_crypto_key(headers["crypto-key"].as_str().unwrap())
                .unwrap(),
        },
        other => panic!("unexpected encoding {other}"),
    };
    ua.keys.decrypt(&body, encoding).unwrap()
}

#[test]
fn tidings_decrypts_what_npm_web_push_encrypts() {
    let ua = UserAgent::new();
    for encoding in ["aes128gcm", "aesgcm"] {
        let text = format!("from npm web-push, {encoding} \u{2713}");
        let request = node(
            "request",
            &json!({
                "subscription": ua.subscription(ENDPOINT),
                "payload": text,
                "encoding": encoding,
                "ttl": 60,
                "vapid": {"subject": "mailto:ops@example.com", "publicKey": VAPID_PUBLIC, "privateKey": VAPID_PRIVATE},
            }),
        )
        .unwrap();
        assert_eq!(tidings_decrypts(&ua, &request), text.as_bytes(), "{encoding}");
    }
}

#[test]
fn tidings_decrypts_what_pywebpush_encrypts() {
    let ua = UserAgent::new();
    for (encoding, draft) in [("aes128gcm", false), ("aesgcm", false), ("aesgcm", true)] {
        let text = format!("from pywebpush, {encoding} draft={draft} \u{2713}");
        let request = python(
            "request",
            &json!({
                "subscription": ua.subscription(ENDPOINT),
                "payload": text,
                "encoding": encoding,
                "ttl": 60,
                "privateKey": VAPID_PRIVATE,
                "subject": "mailto:ops@example.com",
                "draft": draft,
            }),
        )
        .unwrap();
        assert_eq!(tidings_decrypts(&ua, &request), text.as_bytes(), "{encoding} draft={draft}");
    }
}
