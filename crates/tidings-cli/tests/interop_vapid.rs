//! VAPID interop, both directions: headers made by npm web-push and py_vapid pass the
//! Tidings verifier; tokens Tidings signs pass jsonwebtoken (npm) and py_vapid; keys move
//! between the tools in every format they print.

mod common;

use common::{node, python, tidings};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};
use tidings_crypto::vapid::{self, VapidKey, VapidSigner, VerifyError};

const AUD: &str = "https://push.example.net";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn tidings_accepts_npm_web_push_vapid_headers() {
    let keys = node("keys", &json!({})).unwrap();
    let (public, private) = (keys["publicKey"].as_str().unwrap(), keys["privateKey"].as_str().unwrap());
    // Their raw base64url keys import as they are.
    assert_eq!(VapidKey::from_base64(private, Some(public)).unwrap().public_key_base64(), public);
    let input = |encoding| json!({"audience": AUD, "subject": "mailto:ops@example.com", "publicKey": public, "privateKey": private, "encoding": encoding});
    let headers = node("vapid-headers", &input("aes128gcm")).unwrap();
    let auth = headers["Authorization"].as_str().unwrap();
    assert!(auth.starts_with("vapid t="), "{auth}");
    let ok = vapid::verify(auth, None, AUD, now()).unwrap();
    assert_eq!(vapid::VapidKey::from_base64(private, None).unwrap().public_key(), &ok.public_key);
    assert_eq!(ok.claims.sub.as_deref(), Some("mailto:ops@example.com"));

    let headers = node("vapid-headers", &input("aesgcm")).unwrap();
    let auth = headers["Authorization"].as_str().unwrap();
    assert!(auth.starts_with("WebPush "), "{auth}");
    vapid::verify(auth, headers["Crypto-Key"].as_str(), AUD, now()).unwrap();
    // Checked against another origin, the same header is refused.
    assert!(matches!(
        vapid::verify(auth, headers["Crypto-Key"].as_str(), "https://other.example", now()),
        Err(VerifyError::Audience { .. })
    ));
}

#[test]
fn tidings_accepts_py_vapid_headers() {
    let key = VapidKey::generate().unwrap();
    let private = tidings_crypto::b64::encode(&key.private_key_raw());
    for draft in [false, true] {
        let headers = python(
            "vapid-sign",
            &json!({"privateKey": private, "audience": AUD, "subject": "mailto:ops@example.com", "draft": draft}),
        )
        .unwrap();
        let ok = vapid::verify(
            headers["Authorization"].as_str().unwrap(),
            headers["Crypto-Key"].as_str(),
            AUD,
            now(),
        )
        .unwrap_or_else(|e| panic!("draft={draft}: {e}"));
        assert_eq!(&ok.public_key, key.public_key());
    }
}

#[test]
fn npm_jsonwebtoken_and_py_vapid_accept_tidings_tokens() {
    let signer = VapidSigner::new(VapidKey::generate().unwrap(), Some("mailto:ops@example.com".into()));
    let token = signer.token(AUD, now());
    let public = signer.key().public_key_base64();
    let verified =
        node("verify-jwt", &json!({"token": &*token.jwt, "publicKey": public, "audience": AUD})).unwrap();
    assert_eq!(verified["claims"]["aud"], AUD);
    assert_eq!(verified["claims"]["sub"], "mailto:ops@example.com");
    let verified = python(
        "vapid-verify",
        &json!({"authorization": &*token.vapid_authorization, "publicKey": public, "audience": AUD}),
    )
    .unwrap();
    assert_eq!(verified["claims"]["exp"], token.expires_at);

    // And they refuse it for a key that did not sign it: the checks are real.
    let other = VapidKey::generate().unwrap().public_key_base64();
    assert!(node("verify-jwt", &json!({"token": &*token.jwt, "publicKey": other, "audience": AUD})).is_err());
    let forged = format!("vapid t={},k={other}", token.jwt);
    assert!(
        python("vapid-verify", &json!({"authorization": forged, "publicKey": other, "audience": AUD}))
            .is_err()
    );
}

#[test]
fn keys_move_between_tidings_and_the_other_tools() {
    // py_vapid's PEM imports into Tidings.
    let pem = python("vapid-pem", &json!({})).unwrap();
    let key = VapidKey::from_pem(pem["pem"].as_str().unwrap()).unwrap();
    assert_eq!(key.public_key_base64(), pem["publicKey"]);

    // `tidings vapid generate --json` keys sign headers with npm web-push that Tidings and
    // jsonwebtoken accept.
    let out = tidings().args(["vapid", "generate", "--json"]).output().unwrap();
    assert!(out.status.success());
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys.as_object().unwrap().keys().collect::<Vec<_>>(), ["privateKey", "publicKey"]);
    let headers = node(
        "vapid-headers",
        &json!({"audience": AUD, "subject": "mailto:ops@example.com", "publicKey": keys["publicKey"], "privateKey": keys["privateKey"], "encoding": "aes128gcm"}),
    )
    .unwrap();
    let ok = vapid::verify(headers["Authorization"].as_str().unwrap(), None, AUD, now()).unwrap();
    assert_eq!(tidings_crypto::b64::encode(&ok.public_key), keys["publicKey"]);
}
