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
        Some((name.trim(), unquote(value.trim())))
    })
}

/// The header value with every parameter value replaced by `rewrite` of it (given without
/// surrounding quotes, written back as `rewrite` returns it), and all else as written: names,
/// separators, spacing, items without `=`. For passing a header on with its values cleaned
/// up and nothing else touched.
pub fn map_values<'a>(value: &'a str, rewrite: impl Fn(&'a str) -> &'a str) -> String {
    let mut out = String::with_capacity(value.len());
    for piece in value.split_inclusive([';', ',']) {
        let (item, separator) = piece.split_at(piece.trim_end_matches([';', ',']).len());
        match item.split_once('=') {
            Some((name, raw)) => {
                let (before, value, after) = around_spaces(raw);
                out.extend([name, "=", before, rewrite(unquote(value)), after]);
            }
            None => out.push_str(item),
        }
        out.push_str(separator);
    }
    out
}

/// `text` as (leading spaces, the rest trimmed, trailing spaces).
fn around_spaces(text: &str) -> (&str, &str, &str) {
    let start = text.len() - text.trim_start().len();
    let trimmed = text.trim();
    (&text[..start], trimmed, &text[start + trimmed.len()..])
}

/// A value without its surrounding double quotes, if it has both.
pub(crate) fn unquote(value: &str) -> &str {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
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

    #[test]
    fn maps_values_and_keeps_everything_else() {
        fn upper(v: &str) -> &str {
            if v == "b" { "B" } else { v }
        }
        assert_eq!(map_values("a=b", upper), "a=B");
        assert_eq!(map_values(r#"x = "b" ;y=c, b ,z="b""#, upper), "x = B ;y=c, b ,z=B");
        assert_eq!(map_values("a=b;;,=b;a=;a= ", upper), "a=B;;,=B;a=;a= ");
        assert_eq!(map_values(r#"a=""#, upper), r#"a=""#);
        assert_eq!(map_values("", upper), "");
    }
}
