//! The hub's keys, in its data directory, each created (mode 0600) on first start:
//!
//! | file | holds | who needs it |
//! |---|---|---|
//! | `vapid.json` | the VAPID key pair, as `tidings vapid generate --json` writes it | the hub; its public half is every subscription's `applicationServerKey` |
//! | `session-secret` | 32 random bytes | the hub: it signs browser sessions, CSRF tokens and admin logins |
//! | `user-token-secret` | 32 random bytes | the app's backend, to sign user tokens |
//! | `admin-secret` | the admin page's password, unless given by `TIDINGS_HUB_ADMIN_SECRET` | the operator |
//!
//! On PostgreSQL the same keys are rows of the `hub_keys` table instead, made by the first
//! hub process of the deployment, so that every process signs and checks alike.
//!
//! Replacing `vapid.json` with another key pair breaks every stored subscription (they were
//! made for the old public key): docs/hub.md says how to rotate.

use crate::store::postgres::PostgresStore;
use std::path::{Path, PathBuf};
use tidings_crypto::b64;
use tidings_crypto::vapid::{KeyFile, VapidKey};

/// The keys the hub runs with.
pub struct Secrets {
    /// Signs every request to a push service.
    pub vapid: VapidKey,
    /// Signs sessions and tokens.
    pub session: Vec<u8>,
    /// Verifies user tokens.
    pub user_token: Vec<u8>,
    /// The admin page's password.
    pub admin: String,
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct SecretError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

fn random_text() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random generator works");
    b64::encode(&bytes)
}

/// The file's contents (trimmed), creating it with `make()` first if it does not exist.
fn load_or_create(path: &Path, make: impl FnOnce() -> Result<String, String>) -> Result<String, SecretError> {
    let fail = |reason: String| SecretError { path: path.to_owned(), reason };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = make().map_err(fail)?;
            tidings_store::secret_file::write(path, &format!("{text}\n")).map_err(|e| fail(e.to_string()))?;
            tracing::info!(path = %path.display(), "created");
            Ok(text)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Paths of the key files in `data_dir`.
pub fn vapid_path(data_dir: &Path) -> PathBuf {
    data_dir.join("vapid.json")
}

/// The user-token secret's file.
pub fn user_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("user-token-secret")
}

/// The admin password's file.
pub fn admin_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-secret")
}

/// The names of the keys, as files in the data directory and rows in a shared database.
const VAPID: &str = "vapid.json";
const SESSION: &str = "session-secret";
const USER_TOKEN: &str = "user-token-secret";
const ADMIN: &str = "admin-secret";

fn new_vapid() -> Result<String, String> {
    let key = VapidKey::generate().map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&key.to_key_file()).map_err(|e| e.to_string())
}

/// The keys from their texts; `at(name)` says where a key lives, for errors.
fn parse(
    text: impl Fn(&str) -> String,
    at: impl Fn(&str) -> PathBuf,
    admin: Option<String>,
) -> Result<Secrets, SecretError> {
    let fail = |name: &str, reason: String| SecretError { path: at(name), reason };
    let file: KeyFile =
        serde_json::from_str(&text(VAPID)).map_err(|e| fail(VAPID, format!("not a VAPID key file: {e}")))?;
    let vapid = VapidKey::from_key_file(&file).map_err(|e| fail(VAPID, e.to_string()))?;
    let secret = |name: &str| -> Result<Vec<u8>, SecretError> {
        let bytes = b64::decode(text(name).trim()).map_err(|e| fail(name, format!("not base64url: {e}")))?;
        if bytes.len() < 16 {
            return Err(fail(name, "shorter than 16 bytes".into()));
        }
        Ok(bytes)
    };
    let (session, user_token) = (secret(SESSION)?, secret(USER_TOKEN)?);
    let admin = admin.unwrap_or_else(|| text(ADMIN).trim().to_owned());
    if admin.len() < 12 {
        return Err(fail(ADMIN, "the admin secret must be 12 characters or more".into()));
    }
    Ok(Secrets { vapid, session, user_token, admin })
}

/// Loads the hub's keys from `data_dir`, creating the missing ones. `admin` overrides the
/// admin password file.
pub fn load(data_dir: &Path, admin: Option<String>) -> Result<Secrets, SecretError> {
    let mut texts = std::collections::BTreeMap::new();
    texts.insert(VAPID, load_or_create(&vapid_path(data_dir), new_vapid)?);
    for name in [SESSION, USER_TOKEN] {
        texts.insert(name, load_or_create(&data_dir.join(name), || Ok(random_text()))?);
    }
    if admin.is_none() {
        texts.insert(ADMIN, load_or_create(&admin_path(data_dir), || Ok(random_text()))?);
    }
    parse(|name| texts.get(name).cloned().unwrap_or_default(), |name| data_dir.join(name), admin)
}

/// The keys every hub process of a deployment on PostgreSQL shares: those the first one
/// stored, or (with `create`) new ones, stored now; `None` when there are none and
/// `create` is false. `admin` overrides the stored admin secret.
pub async fn shared(
    store: &PostgresStore,
    admin: Option<String>,
    create: bool,
) -> Result<Option<Secrets>, SecretError> {
    let fail = |reason: String| SecretError { path: PathBuf::from("the database's hub_keys"), reason };
    let mut proposed = std::collections::BTreeMap::new();
    if create {
        proposed.insert(VAPID.to_owned(), new_vapid().map_err(fail)?);
        for name in [SESSION, USER_TOKEN, ADMIN] {
            proposed.insert(name.to_owned(), random_text());
        }
    }
    let stored = store.shared_keys(proposed).await.map_err(|e| fail(e.to_string()))?;
    if !stored.contains_key(VAPID) {
        return Ok(None);
    }
    parse(
        |name| stored.get(name).cloned().unwrap_or_default(),
        |name| PathBuf::from(format!("the database's hub_keys ({name})")),
        admin,
    )
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(dir.path(), None).unwrap();
        let again = load(dir.path(), None).unwrap();
        assert_eq!(first.vapid.public_key(), again.vapid.public_key());
        assert_eq!(first.session, again.session);
        assert_eq!(first.admin, again.admin);
        assert_ne!(first.session, first.user_token);
        #[cfg(unix)]
        for name in ["vapid.json", "session-secret", "user-token-secret", "admin-secret"] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert!(load(dir.path(), Some("short".into())).is_err());
        std::fs::write(dir.path().join("vapid.json"), "{").unwrap();
        let Err(e) = load(dir.path(), None) else { panic!("a corrupt key file must be an error") };
        assert!(e.to_string().contains("vapid.json"), "{e}");
    }
}
