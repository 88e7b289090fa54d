//! Showing endpoints safely.
//!
//! An endpoint URL is a bearer capability: anyone who has it can push to the subscription
//! (and learn that it exists). Logs, reports and error messages show only the push
//! service's origin and the first few characters of the path, which is enough to tell
//! endpoints apart by eye and to see which service they belong to.

/// How many characters of the path survive masking.
const VISIBLE_PATH_CHARS: usize = 12;

/// The endpoint with all but the start of its path replaced by `…`.
///
/// `https://fcm.googleapis.com/fcm/send/dGhpcyBpcyBzZWNyZXQ` becomes
/// `https://fcm.googleapis.com/fcm/send/dG…`. Text that is not a URL is masked whole.
pub fn mask(endpoint: &str) -> String {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return "…".to_owned();
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    // Userinfo would be a secret too.
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let mut masked = format!("{scheme}://{host}");
    let visible: String = path.chars().take(VISIBLE_PATH_CHARS).collect();
    masked.push_str(&visible);
    if path.chars().count() > VISIBLE_PATH_CHARS {
        masked.push('…');
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_origin_and_a_path_prefix() {
        assert_eq!(
            mask("https://fcm.googleapis.com/fcm/send/dGhpcyBpcyBzZWNyZXQ"),
            "https://fcm.googleapis.com/fcm/send/dG…"
        );
        assert_eq!(mask("http://127.0.0.1:8080/short"), "http://127.0.0.1:8080/short");
        assert_eq!(mask("https://user:pw@host/x"), "https://host/x");
        assert_eq!(mask("not a url at all"), "…");
    }
}
