//! RFC 8188 `aes128gcm`: header, key derivation and records.
//!
//! ```text
//! body   = salt(16) | rs(4, big endian) | idlen(1) | keyid(idlen) | record*
//! record = AES-128-GCM(data | delimiter | 0x00*)      delimiter: 0x01 (more follow) or 0x02 (last)
//! ```
//!
//! Every record but the last is exactly `rs` bytes of ciphertext (tag included); the last
//! may be shorter. The decoder here is general (any record size, any key id, any number of
//! records); the encoder writes the single record that Web Push uses.

use super::{Error, KEY_LEN, RecordKey, SALT_LEN, TAG_LEN, hkdf};
use aws_lc_rs::aead::NONCE_LEN;

/// Bytes before the key id: salt, record size, key id length.
pub const FIXED_HEADER_LEN: usize = SALT_LEN + 4 + 1;
/// The smallest record size RFC 8188 allows: a tag, a delimiter and one byte of data.
pub const MIN_RECORD_SIZE: u32 = TAG_LEN as u32 + 2;
/// The record size Web Push senders write (and RFC 8291's example uses).
pub const DEFAULT_RECORD_SIZE: u32 = 4096;

const DELIMITER_MORE: u8 = 1;
const DELIMITER_LAST: u8 = 2;

/// The parsed content-coding header at the front of an `aes128gcm` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Salt for key derivation; must be random per message.
    pub salt: [u8; SALT_LEN],
    /// Size of every record but the last, in ciphertext bytes (tag included).
    pub record_size: u32,
    /// Identifies the key; Web Push puts the sender's public key here.
    pub key_id: &'a [u8],
}

impl<'a> Header<'a> {
    /// Splits a body into its header and the records that follow.
    pub fn parse(body: &'a [u8]) -> Result<(Self, &'a [u8]), Error> {
        let short = |needed| Error::ShortHeader { needed, actual: body.len() };
        let (fixed, rest) = body.split_first_chunk::<FIXED_HEADER_LEN>().ok_or(short(FIXED_HEADER_LEN))?;
        let (salt, rest_fixed) = fixed.split_first_chunk::<SALT_LEN>().expect("21 > 16");
        let record_size = u32::from_be_bytes(rest_fixed[..4].try_into().expect("4 bytes"));
        if record_size < MIN_RECORD_SIZE {
            return Err(Error::RecordSize(record_size, MIN_RECORD_SIZE));
        }
        let id_len = usize::from(rest_fixed[4]);
        if rest.len() < id_len {
            return Err(short(FIXED_HEADER_LEN + id_len));
        }
        let (key_id, records) = rest.split_at(id_len);
        Ok((Self { salt: *salt, record_size, key_id }, records))
    }

    /// The header's length on the wire.
    pub fn len(&self) -> usize {
        FIXED_HEADER_LEN + self.key_id.len()
    }

    /// Always false: a header has at least its fixed part. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.record_size.to_be_bytes());
        out.push(self.key_id.len() as u8);
        out.extend_from_slice(self.key_id);
    }
}

/// Derives the record key and base nonce from input keying material (RFC 8188 section 2.2).
pub(crate) fn record_key(ikm: &[u8], salt: &[u8; SALT_LEN]) -> RecordKey {
    let mut cek = [0; KEY_LEN];
    let mut nonce = [0; NONCE_LEN];
    hkdf(salt, ikm, &[b"Content-Encoding: aes128gcm\0"], &mut cek);
    hkdf(salt, ikm, &[b"Content-Encoding: nonce\0"], &mut nonce);
    RecordKey::new(&cek, nonce)
}

/// Decrypts a whole RFC 8188 body whose key is derived from `ikm`.
///
/// This is the general decoder: several records, any record size of at least 18 bytes, any
/// key id. For Web Push bodies use [`crate::webpush::ReceiverKeys::decrypt`], which derives
/// the IKM from the key id first.
pub fn decrypt(ikm: &[u8], body: &[u8]) -> Result<Vec<u8>, Error> {
    let (header, records) = Header::parse(body)?;
    decrypt_records(&record_key(ikm, &header.salt), header.record_size, records)
}

pub(crate) fn decrypt_records(key: &RecordKey, record_size: u32, records: &[u8]) -> Result<Vec<u8>, Error> {
    if records.is_empty() {
        return Err(Error::Truncated);
    }
    // record_size >= 18 was checked by Header::parse; usize is at least 32 bits here.
    let chunks = records.chunks(record_size as usize);
    let count = chunks.len();
    let mut plaintext = Vec::with_capacity(records.len());
    let mut buf = Vec::with_capacity(records.len().min(record_size as usize));
    for (seq, chunk) in chunks.enumerate() {
        let seq = seq as u64;
        let last = seq as usize + 1 == count;
        if chunk.len() <= TAG_LEN {
            return Err(Error::Truncated);
        }
        buf.clear();
        buf.extend_from_slice(chunk);
        let data = key.open(seq, &mut buf)?;
        let end = data.iter().rposition(|&b| b != 0).ok_or(Error::MissingDelimiter(seq))?;
        match (data[end], last) {
            (DELIMITER_LAST, true) => {}
            (DELIMITER_LAST, false) => return Err(Error::TrailingData),
            // A full record marked "more follow" with nothing after it: the rest was cut off.
            (DELIMITER_MORE, true) => return Err(Error::Truncated),
            (DELIMITER_MORE, false) => {}
            (byte, _) => return Err(Error::BadDelimiter { record: seq, byte }),
        }
        plaintext.extend_from_slice(&data[..end]);
    }
    Ok(plaintext)
}

/// Encrypts `plaintext` as one record followed by `padding` zero bytes.
///
/// Web Push always sends exactly one record, so this is all a sender needs; the header (and
/// so the key id) is written in front.
pub(crate) fn encrypt_single_record(
    key: &RecordKey,
    header: &Header<'_>,
    plaintext: &[u8],
    padding: usize,
) -> Result<Vec<u8>, Error> {
    let needed = plaintext.len() + 1 + padding + TAG_LEN;
    if needed > header.record_size as usize {
        return Err(Error::TooLarge { needed, record_size: header.record_size });
    }
    let mut record = Vec::with_capacity(needed);
    record.extend_from_slice(plaintext);
    record.push(DELIMITER_LAST);
    record.resize(plaintext.len() + 1 + padding, 0);
    key.seal(0, &mut record)?;
    let mut body = Vec::with_capacity(header.len() + record.len());
    header.write(&mut body);
    body.extend_from_slice(&record);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;

    #[test]
    fn rfc8188_example_3_1_single_record() {
        let ikm = b64::decode("yqdlZ-tYemfogSmv7Ws5PQ").unwrap();
        let body =
            b64::decode("I1BsxtFttlv3u_Oo94xnmwAAEAAA-NAVub2qFgBEuQKRapoZu-IxkIva3MEB1PD-ly8Thjg").unwrap();
        let (header, _) = Header::parse(&body).unwrap();
        assert_eq!((header.record_size, header.key_id.len()), (4096, 0));
        assert_eq!(decrypt(&ikm, &body).unwrap(), b"I am the walrus");
    }

    #[test]
    fn rfc8188_example_3_2_two_records_with_key_id() {
        let ikm = b64::decode("BO3ZVPxUlnLORbVGMpbT1Q").unwrap();
        let body = b64::decode(
            "uNCkWiNYzKTnBN9ji3-qWAAAABkCYTHOG8chz_gnvgOqdGYovxyjuqRyJFjEDyoF1Fvkj6hQPdPHI51OEUKEpgz3SsLWIqS_uA",
        )
        .unwrap();
        let (header, _) = Header::parse(&body).unwrap();
        assert_eq!((header.record_size, header.key_id), (25, &b"a1"[..]));
        assert_eq!(decrypt(&ikm, &body).unwrap(), b"I am the walrus");
    }

    fn example_3_2() -> (Vec<u8>, Vec<u8>) {
        let ikm = b64::decode("BO3ZVPxUlnLORbVGMpbT1Q").unwrap();
        let body = b64::decode(
            "uNCkWiNYzKTnBN9ji3-qWAAAABkCYTHOG8chz_gnvgOqdGYovxyjuqRyJFjEDyoF1Fvkj6hQPdPHI51OEUKEpgz3SsLWIqS_uA",
        )
        .unwrap();
        (ikm, body)
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        let (ikm, body) = example_3_2();
        let header_len = FIXED_HEADER_LEN + 2;
        assert!(matches!(decrypt(&ikm, &body[..10]), Err(Error::ShortHeader { needed: 21, actual: 10 })));
        assert!(matches!(decrypt(&ikm, &body[..22]), Err(Error::ShortHeader { needed: 23, .. })));
        assert_eq!(decrypt(&ikm, &body[..header_len]), Err(Error::Truncated));
        // Dropping the second record leaves a first record that says "more follow".
        assert_eq!(decrypt(&ikm, &body[..header_len + 25]), Err(Error::Truncated));
        // Cutting into the second record breaks its tag.
        assert_eq!(decrypt(&ikm, &body[..body.len() - 1]), Err(Error::Decrypt));
        // A remainder too short to hold even a tag.
        assert_eq!(decrypt(&ikm, &body[..header_len + 25 + 5]), Err(Error::Truncated));
        let mut tampered = body.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(decrypt(&ikm, &tampered), Err(Error::Decrypt));
        assert_eq!(decrypt(b"wrong key material", &body), Err(Error::Decrypt));
        let mut small_rs = body.clone();
        small_rs[16..20].copy_from_slice(&17u32.to_be_bytes());
        assert_eq!(decrypt(&ikm, &small_rs), Err(Error::RecordSize(17, 18)));
    }

    /// Builds bodies with chosen record contents to reach the delimiter rules.
    fn sealed(ikm: &[u8], rs: u32, records: &[&[u8]]) -> Vec<u8> {
        let salt = [7; SALT_LEN];
        let key = record_key(ikm, &salt);
        let mut body = Vec::new();
        Header { salt, record_size: rs, key_id: b"" }.write(&mut body);
        for (seq, plain) in records.iter().enumerate() {
            let mut record = plain.to_vec();
            key.seal(seq as u64, &mut record).unwrap();
            body.extend_from_slice(&record);
        }
        body
    }

    #[test]
    fn delimiter_rules() {
        let ikm = b"ikm";
        assert_eq!(decrypt(ikm, &sealed(ikm, 20, &[b"ab\x02\0"])).unwrap(), b"ab");
        assert_eq!(decrypt(ikm, &sealed(ikm, 20, &[b"abc\x01", b"d\x02"])).unwrap(), b"abcd");
        assert_eq!(decrypt(ikm, &sealed(ikm, 20, &[b"\0\0\0"])), Err(Error::MissingDelimiter(0)));
        assert_eq!(
            decrypt(ikm, &sealed(ikm, 20, &[b"ab\x02\x05"])),
            Err(Error::BadDelimiter { record: 0, byte: 5 })
        );
        assert_eq!(decrypt(ikm, &sealed(ikm, 20, &[b"abc\x02", b"d\x02"])), Err(Error::TrailingData));
        assert_eq!(decrypt(ikm, &sealed(ikm, 20, &[b"abc\x01"])), Err(Error::Truncated));
    }

    #[test]
    fn single_record_round_trip_with_padding() {
        let salt = [3; SALT_LEN];
        let key = record_key(b"secret", &salt);
        let header = Header { salt, record_size: 100, key_id: b"id" };
        let body = encrypt_single_record(&key, &header, b"hello", 20).unwrap();
        assert_eq!(body.len(), header.len() + 5 + 1 + 20 + TAG_LEN);
        assert_eq!(decrypt(b"secret", &body).unwrap(), b"hello");
        assert_eq!(
            encrypt_single_record(&key, &header, &[0; 80], 4),
            Err(Error::TooLarge { needed: 101, record_size: 100 })
        );
    }
}
