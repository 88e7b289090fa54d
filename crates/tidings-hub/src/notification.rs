//! Notifications in the Declarative Web Push format (WebKit; Safari 18.4 and later):
//!
//! ```json
//! {"web_push": 8030, "notification": {"title": "…", "navigate": "https://…", "body": "…"},
//!  "app_badge": 3, "mutable": false}
//! ```
//!
//! Safari shows such a payload itself, with no service worker; other browsers deliver it as
//! an ordinary `push` event, and the PWA kit's service worker renders the same format, so an
//! app writes one notification for every browser. `navigate` is required by the format (the
//! URL opened on click); the hub fills in the app's URL when the sender gives none.

use serde::{Deserialize, Serialize};

/// The format's marker value (`web_push`), the number of the Web Push RFC.
pub const MAGIC: u16 = 8030;

/// A notification as the app's backend describes it (and as it goes into the payload). The
/// default has an empty title, which [`payload`] refuses: set one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// The title (required).
    pub title: String,
    /// Where a click goes: an absolute http(s) URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub navigate: Option<String>,
    /// The text under the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// An icon URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// A large image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A monochrome badge URL (Android's status bar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge: Option<String>,
    /// Notifications with the same tag replace each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Buttons, each with its own URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// Show without sound or vibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent: Option<bool>,
    /// Language tag of title and body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// `auto`, `ltr` or `rtl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// A notification button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// The action's name, reported to the service worker on click.
    pub action: String,
    /// The button's label.
    pub title: String,
    /// Where clicking it goes.
    pub navigate: String,
}

/// A notification message: the notification plus the app badge and whether the service
/// worker may change it before it is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declarative {
    /// Always [`MAGIC`].
    pub web_push: u16,
    /// What to show.
    pub notification: Notification,
    /// The number on the app's icon (0 clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_badge: Option<u64>,
    /// Whether a service worker may rewrite the notification before it is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutable: Option<bool>,
}

/// Why a notification cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification: {0}")]
pub struct Invalid(pub String);

fn url(field: &str, value: &str) -> Result<(), Invalid> {
    let ok = (value.starts_with("https://") || value.starts_with("http://"))
        && value.parse::<http::Uri>().is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
    if ok { Ok(()) } else { Err(Invalid(format!("{field} must be an absolute http(s) URL"))) }
}

/// Builds the payload for `notification`, with `default_navigate` where it names no URL.
pub fn payload(
    mut notification: Notification,
    app_badge: Option<u64>,
    mutable: Option<bool>,
    default_navigate: &str,
) -> Result<Vec<u8>, Invalid> {
    if notification.title.trim().is_empty() {
        return Err(Invalid("title is required".into()));
    }
    let navigate = notification.navigate.get_or_insert_with(|| default_navigate.to_owned()).clone();
    url("navigate", &navigate)?;
    for (field, value) in
        [("icon", &notification.icon), ("image", &notification.image), ("badge", &notification.badge)]
    {
        if let Some(value) = value {
            url(field, value)?;
        }
    }
    for action in &notification.actions {
        if action.action.is_empty() || action.title.is_empty() {
            return Err(Invalid("every action needs an action name and a title".into()));
        }
        url("actions[].navigate", &action.navigate)?;
    }
    if let Some(dir) = &notification.dir
        && !["auto", "ltr", "rtl"].contains(&dir.as_str())
    {
        return Err(Invalid("dir must be auto, ltr or rtl".into()));
    }
    let message = Declarative { web_push: MAGIC, notification, app_badge, mutable };
    Ok(serde_json::to_vec(&message).expect("a notification serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn titled(title: &str) -> Notification {
        serde_json::from_value(serde_json::json!({ "title": title })).unwrap()
    }

    #[test]
    fn writes_the_declarative_format() {
        let mut n = titled("Hello");
        n.body = Some("World".into());
        n.actions = vec![Action {
            action: "open".into(),
            title: "Open".into(),
            navigate: "https://a.example/x".into(),
        }];
        let bytes = payload(n, Some(3), Some(false), "https://app.example/").unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "web_push": 8030,
                "notification": {
                    "title": "Hello", "body": "World", "navigate": "https://app.example/",
                    "actions": [{"action": "open", "title": "Open", "navigate": "https://a.example/x"}]
                },
                "app_badge": 3,
                "mutable": false
            })
        );
    }

    #[test]
    fn refuses_what_browsers_would_not_show() {
        assert!(payload(titled(" "), None, None, "https://a.example/").is_err());
        let mut n = titled("x");
        n.navigate = Some("javascript:alert(1)".into());
        assert!(payload(n, None, None, "https://a.example/").is_err());
        let mut n = titled("x");
        n.icon = Some("/relative.png".into());
        assert!(payload(n, None, None, "https://a.example/").is_err());
        let unknown = serde_json::from_value::<Notification>(serde_json::json!({"title": "x", "colour": 1}));
        assert!(unknown.is_err());
    }
}
