//! Parameters of the `Encryption`, `Crypto-Key` and `Authorization: vapid` header values.
//!
//! They share one loose grammar: `name=value` pairs, separated by `;` or `,`, with optional
//! spaces and optionally quoted values. Senders in the wild use every variation (npm web-push
//! writes `dh=...;p256ecdsa=...`, RFC 8292's example writes `t=..., k=...`), so we accept all.

/// Iterates over the `name=value` pairs of a header value, in order.
///
/// Items without `=` are skipped; names are returned as written (compare them
/// case-insensitively), values without surrounding quotes.
pub fn pairs(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split([';', ',']).filter_map(|item| {
        let (name, value) = item.split_once('=')?;
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        Some((name.trim(), value))
    })
}

/// The value of the first parameter called `name` (case-insensitive), if any.
pub fn find<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    pairs(value).find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_parameters_in_every_spelling() {
        let v = r#"dh=AAA;p256ecdsa=BBB"#;
        assert_eq!(find(v, "dh"), Some("AAA"));
        assert_eq!(find(v, "P256ECDSA"), Some("BBB"));
        let v = r#"t=x.y.z, k="KKK=""#;
        assert_eq!(find(v, "t"), Some("x.y.z"));
        assert_eq!(find(v, "k"), Some("KKK="));
        assert_eq!(find("salt=abc; rs=10", "rs"), Some("10"));
        assert_eq!(find("garbage", "rs"), None);
    }
}
