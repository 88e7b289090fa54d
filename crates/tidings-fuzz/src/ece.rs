//! The content-encoding decoders (`tidings_crypto::ece`): RFC 8188 `aes128gcm` and the
//! legacy `aesgcm`, as a user agent runs them on the bodies a push service hands it.
//!
//! A body of random bytes never gets past the first AES-GCM tag, so these targets also seal
//! the fuzzer's bytes as records themselves (keys derived here, from the specifications,
//! apart from the crate's code) and compare what the decoder answers with the record rules
//! applied by hand: that reaches the padding, delimiter and record-size logic.

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{ECDH_P256, PrivateKey, UnparsedPublicKey, agree};
use aws_lc_rs::hmac;
use std::sync::LazyLock;
use tidings_crypto::ece::{TAG_LEN, aes128gcm, aesgcm};
use tidings_crypto::webpush::{ReceivedEncoding, ReceiverKeys};

/// Bytes 0..16: the IKM; 16..32: the salt; 32: the record size (18 to 65); the rest: record
/// plaintexts, sealed here. Also the whole input as a body.
///
/// Properties: no panic; the decoder's answer equals RFC 8188's rules applied by hand (each
/// record's padding ends at its last non-zero byte, which is 2 on the last record and 1 on
/// the others).
pub fn ece_aes128gcm(data: &[u8]) {
    let _ = aes128gcm::decrypt(b"fuzz", data);
    if let Ok((header, records)) = aes128gcm::Header::parse(data) {
        assert_eq!(header.len() + records.len(), data.len());
    }
    let Some((fixed, stream)) = data.split_first_chunk::<33>() else { return };
    let (ikm, salt) = (&fixed[..16], <[u8; 16]>::try_from(&fixed[16..32]).expect("16 bytes"));
    let record_size = 18 + u32::from(fixed[32] % 48);
    let mut cek = [0; 16];
    let mut nonce = [0; 12];
    hkdf(&salt, ikm, &[b"Content-Encoding: aes128gcm\0"], &mut cek);
    hkdf(&salt, ikm, &[b"Content-Encoding: nonce\0"], &mut nonce);
    let records: Vec<&[u8]> = stream.chunks(record_size as usize - TAG_LEN).collect();
    let mut body = salt.to_vec();
    body.extend_from_slice(&record_size.to_be_bytes());
    body.push(0);
    for (seq, record) in records.iter().enumerate() {
        body.extend_from_slice(&seal(&cek, nonce, seq as u64, record));
    }
    let expected = (!records.is_empty())
        .then(|| {
            records.iter().enumerate().try_fold(Vec::new(), |mut out, (seq, record)| {
                let end = record.iter().rposition(|&b| b != 0)?;
                let want = if seq + 1 == records.len() { 2 } else { 1 };
                (record[end] == want).then(|| out.extend_from_slice(&record[..end]))?;
                Some(out)
            })
        })
        .flatten();
    assert_eq!(aes128gcm::decrypt(ikm, &body).ok(), expected);
}

/// Byte 0: the record size (3 to 42); then a line for `Encryption`, a line for `Crypto-Key`,
/// and record plaintexts, sealed here with keys agreed between two fixed key pairs.
///
/// Properties: no panic; the header parsers agree with their writers (normalizing twice is
/// normalizing once; a parsed `Encryption` written and parsed again is the same); the
/// decoder's answer equals the scheme's rules applied by hand (two bytes of padding length,
/// that many zero bytes; a body that ends on a record boundary lost its last record).
pub fn ece_aesgcm(data: &[u8]) {
    let Some((&rs, rest)) = data.split_first() else { return };
    let (encryption, rest) = crate::split_line(rest);
    let (crypto_key, stream) = crate::split_line(rest);
    let (encryption, crypto_key) = (String::from_utf8_lossy(encryption), String::from_utf8_lossy(crypto_key));
    let normalized = aesgcm::normalize_header(&encryption);
    assert_eq!(aesgcm::normalize_header(&normalized), normalized, "normalizing twice differs");
    if let Ok(params) = aesgcm::EncryptionParams::parse(&normalized) {
        assert_eq!(aesgcm::EncryptionParams::parse(&params.header_value()), Ok(params));
    }
    let _ = aesgcm::sender_key_from_crypto_key(&aesgcm::normalize_header(&crypto_key));

    let fixed = &*AESGCM;
    let record_size = 3 + u32::from(rs % 40);
    let records: Vec<&[u8]> = stream.chunks(record_size as usize).collect();
    let body: Vec<u8> = records
        .iter()
        .enumerate()
        .flat_map(|(seq, record)| seal(&fixed.cek, fixed.nonce, seq as u64, record))
        .collect();
    let ended_on_boundary = records.last().is_none_or(|last| last.len() == record_size as usize);
    let expected = (!ended_on_boundary)
        .then(|| {
            records.iter().try_fold(Vec::new(), |mut out, record| {
                let pad = usize::from(u16::from_be_bytes([*record.first()?, *record.get(1)?]));
                let padding = record.get(2..2 + pad)?;
                padding.iter().all(|&b| b == 0).then(|| out.extend_from_slice(&record[2 + pad..]))?;
                Some(out)
            })
        })
        .flatten();
    let params = aesgcm::EncryptionParams { salt: SALT, record_size };
    let encoding = ReceivedEncoding::Aesgcm { params, sender_public: fixed.sender_public };
    assert_eq!(fixed.receiver.decrypt(&body, encoding).ok(), expected);
}

const SALT: [u8; 16] = [5; 16];

/// The fixed keys of the `aesgcm` target, and the record key they agree on.
struct Aesgcm {
    receiver: ReceiverKeys,
    sender_public: [u8; 65],
    cek: [u8; 16],
    nonce: [u8; 12],
}

/// draft-ietf-webpush-encryption-04 section 3, for the receiver `[1; 32]` (auth `[3; 16]`)
/// and the sender `[2; 32]`.
static AESGCM: LazyLock<Aesgcm> = LazyLock::new(|| {
    let auth = [3; 16];
    let receiver = ReceiverKeys::from_raw(&[1; 32], auth).expect("a valid scalar");
    let ua_public = *receiver.subscription_keys().p256dh.as_bytes();
    let sender = PrivateKey::from_private_key(&ECDH_P256, &[2; 32]).expect("a valid scalar");
    let sender_public: [u8; 65] =
        sender.compute_public_key().expect("public key").as_ref().try_into().expect("65 bytes");
    let ecdh = agree(&sender, UnparsedPublicKey::new(&ECDH_P256, ua_public), (), |s| Ok(s.to_vec()))
        .expect("agreement");
    let mut ikm = [0; 32];
    hkdf(&auth, &ecdh, &[b"Content-Encoding: auth\0"], &mut ikm);
    let len = 65u16.to_be_bytes();
    let context: [&[u8]; 5] = [b"P-256\0", &len, &ua_public, &len, &sender_public];
    let (mut cek, mut nonce) = ([0; 16], [0; 12]);
    let info = |label: &'static [u8]| -> Vec<&[u8]> { std::iter::once(label).chain(context).collect() };
    hkdf(&SALT, &ikm, &info(b"Content-Encoding: aesgcm\0"), &mut cek);
    hkdf(&SALT, &ikm, &info(b"Content-Encoding: nonce\0"), &mut nonce);
    Aesgcm { receiver, sender_public, cek, nonce }
});

/// HKDF-SHA256 with one expand block (RFC 5869), as both schemes use it.
fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), ikm);
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()));
    info.iter().for_each(|part| ctx.update(part));
    ctx.update(&[1]);
    out.copy_from_slice(&ctx.sign().as_ref()[..out.len()]);
}

/// One AES-128-GCM record: the nonce is the base nonce with the sequence number XORed in.
fn seal(cek: &[u8; 16], mut nonce: [u8; 12], seq: u64, plaintext: &[u8]) -> Vec<u8> {
    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, cek).expect("16-byte key"));
    let mut record = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut record)
        .expect("seal");
    record
}
