//! The app's API keys. Only their SHA-256 is kept, so a copy of the data does not hand out
//! working keys:
//!
//! * with the embedded store, one JSON line per key in `<data_dir>/api-keys` (mode 0600),
//!   which `tidings hub api-key create|revoke` edit while the hub runs, and last use in
//!   `<data_dir>/api-keys.used`, which the hub writes;
//! * on PostgreSQL, the `api_keys` table, shared by every hub process.
//!
//! A hub sees a new or revoked key within a second, and notes when each key was last used
//! (written at most once a minute, and when it stops).

use crate::store::postgres::PostgresStore;
use aws_lc_rs::{constant_time, digest, rand};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tidings_crypto::b64;

/// What every key starts with, so that a leaked one is recognisable (secret scanners).
pub const PREFIX: &str = "tdh_";

/// One key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// A name for people (`backend`, `cron`...).
    pub name: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
    /// When it was created.
    pub created_at: u64,
}

impl Entry {
    /// A short id for people: the first 12 hex digits of the hash (it reveals nothing of
    /// the key).
    pub fn id(&self) -> &str {
        self.sha256.get(..12).unwrap_or(&self.sha256)
    }
}

/// SHA-256 of a key, hex.
pub fn hash(key: &str) -> String {
    digest::digest(&digest::SHA256, key.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A new key (shown once; only its hash is kept).
pub fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).expect("the system's random generator works");
    format!("{PREFIX}{}", b64::encode(&bytes))
}

/// The one key among `entries` whose id (see [`Entry::id`]) or name is `which`. A name that
/// several keys share is refused: give the id.
pub fn find_one<'a>(entries: &'a [Entry], which: &str) -> Result<&'a Entry, String> {
    let by_id = |e: &Entry| which.len() >= 8 && e.sha256.starts_with(&which.to_ascii_lowercase());
    let matching: Vec<&Entry> = entries.iter().filter(|e| by_id(e) || e.name == which).collect();
    match matching[..] {
        [entry] => Ok(entry),
        [] => Err(format!("no API key has the id or name {which:?} (tidings hub api-key list)")),
        _ => Err(format!("several API keys match {which:?}; give the id (tidings hub api-key list)")),
    }
}

/// Reads the keys file; a missing file holds no keys.
pub fn read(path: &Path) -> std::io::Result<Vec<Entry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })
        })
        .collect()
}

fn write(path: &Path, entries: &[Entry]) -> std::io::Result<()> {
    let text: String =
        entries.iter().map(|e| serde_json::to_string(e).expect("entries serialize") + "\n").collect();
    tidings_store::secret_file::write(path, &text)
}

/// Creates a key named `name` in the keys file, and returns the key (shown once).
pub fn create(path: &Path, name: &str, now: u64) -> std::io::Result<String> {
    let key = new_key();
    let mut entries = read(path)?;
    entries.push(Entry { name: name.to_owned(), sha256: hash(&key), created_at: now });
    write(path, &entries)?;
    Ok(key)
}

/// Removes the key `which` (id or name) from the keys file; returns it.
pub fn revoke(path: &Path, which: &str) -> std::io::Result<Entry> {
    let mut entries = read(path)?;
    let removed = find_one(&entries, which)
        .map_err(|message| std::io::Error::new(std::io::ErrorKind::InvalidInput, message))?
        .clone();
    entries.retain(|e| e != &removed);
    write(path, &entries)?;
    Ok(removed)
}

/// When each key of a keys file was last used (by hash), as the hub last wrote it.
pub fn read_usage(path: &Path) -> std::io::Result<BTreeMap<String, u64>> {
    match std::fs::read(usage_path(path)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

fn usage_path(path: &Path) -> PathBuf {
    path.with_extension("used")
}

/// Where the keys are.
pub enum Source {
    /// The keys file of the data directory.
    File(PathBuf),
    /// The `api_keys` table.
    Database(PostgresStore),
}

impl Source {
    async fn entries(&self) -> Result<Vec<Entry>, String> {
        match self {
            Self::File(path) => read(path).map_err(|e| e.to_string()),
            Self::Database(store) => Ok(store
                .api_keys()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(sha256, name, created_at, _)| Entry { name, sha256, created_at })
                .collect()),
        }
    }

    /// What tells that the keys changed without reading them: a file's modification time
    /// and length. A table is read again each time.
    fn version(&self) -> Option<(SystemTime, u64)> {
        match self {
            Self::File(path) => {
                std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
            }
            Self::Database(_) => None,
        }
    }
}

/// The keys the hub accepts, looked at again when one is not known (so a new key works at
/// once: the file when it changed, the table's row of that key) and once a second
/// otherwise (so a revoked key stops working).
pub struct KeyRing {
    source: Source,
    state: Mutex<State>,
}

struct State {
    checked: Instant,
    version: Option<(SystemTime, u64)>,
    entries: Vec<Entry>,
    /// Last use of each key, by hash, and whether it changed since it was written.
    used: BTreeMap<String, u64>,
    unsaved: bool,
}

impl KeyRing {
    /// The keys of `source`.
    pub async fn open(source: Source) -> Result<Self, String> {
        let entries = source.entries().await?;
        let used = match &source {
            Source::File(path) => read_usage(path).unwrap_or_default(),
            Source::Database(_) => BTreeMap::new(),
        };
        let state =
            State { checked: Instant::now(), version: source.version(), entries, used, unsaved: false };
        Ok(Self { source, state: Mutex::new(state) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry of the key `presented`, if it is one of ours, noting its use at `now`.
    pub async fn check(&self, presented: &str, now: u64) -> Option<Entry> {
        let presented = hash(presented);
        let known = find(&self.state().entries, &presented).is_some();
        self.reload(known).await;
        if !known && let Source::Database(store) = &self.source {
            match store.api_key(&presented).await {
                Ok(Some((name, created_at))) => {
                    let mut state = self.state();
                    if find(&state.entries, &presented).is_none() {
                        state.entries.push(Entry { name, sha256: presented.clone(), created_at });
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot look up an API key"),
            }
        }
        let mut state = self.state();
        let entry = find(&state.entries, &presented)?.clone();
        if state.used.get(&presented) != Some(&now) {
            state.used.insert(presented, now);
            state.unsaved = true;
        }
        Some(entry)
    }

    /// Reads the keys again if they may have changed: a second after the last time, or
    /// (a file) when the presented key is not `known` and the file changed.
    async fn reload(&self, known: bool) {
        let version;
        {
            let mut state = self.state();
            let fresh = state.checked.elapsed() < Duration::from_secs(1);
            if fresh && (known || matches!(self.source, Source::Database(_))) {
                return;
            }
            version = self.source.version();
            if version.is_some() && version == state.version {
                state.checked = Instant::now();
                return;
            }
            state.checked = Instant::now();
        }
        match self.source.entries().await {
            Ok(entries) => {
                let mut state = self.state();
                state.entries = entries;
                state.version = version;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the API keys again; keeping the old ones"),
        }
    }

    /// Writes when the keys were last used, if that changed.
    pub async fn save_usage(&self) -> Result<(), String> {
        let used = {
            let mut state = self.state();
            if !state.unsaved {
                return Ok(());
            }
            state.unsaved = false;
            state.used.clone()
        };
        let saved = match &self.source {
            Source::File(path) => {
                let text = serde_json::to_string(&used).expect("a map of numbers serializes");
                tidings_store::secret_file::write(&usage_path(path), &text).map_err(|e| e.to_string())
            }
            Source::Database(store) => store.touch_api_keys(&used).await.map_err(|e| e.to_string()),
        };
        if saved.is_err() {
            self.state().unsaved = true;
        }
        saved
    }
}

/// The entry of the key whose hash is `presented` (compared in constant time).
fn find<'a>(entries: &'a [Entry], presented: &str) -> Option<&'a Entry> {
    entries
        .iter()
        .find(|e| constant_time::verify_slices_are_equal(e.sha256.as_bytes(), presented.as_bytes()).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_stored_hashed_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-keys");
        let ring = KeyRing::open(Source::File(path.clone())).await.unwrap();
        assert_eq!(ring.check("tdh_nothing", 5).await, None);
        let key = create(&path, "backend", 1).unwrap();
        assert!(key.starts_with(PREFIX));
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(&key[PREFIX.len()..]), "the key itself must not be stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(
            ring.check(&key, 5).await.map(|e| e.name).as_deref(),
            Some("backend"),
            "a new key works at once"
        );
        assert_eq!(ring.check(&format!("{key}x"), 5).await, None);
        let second = create(&path, "cron", 2).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
        let other = KeyRing::open(Source::File(path.clone())).await.unwrap();
        assert_eq!(other.check(&second, 6).await.map(|e| e.name).as_deref(), Some("cron"));
        // Last use is written when asked, and read back by `list`.
        assert!(read_usage(&path).unwrap().is_empty());
        ring.save_usage().await.unwrap();
        let entries = read(&path).unwrap();
        assert_eq!(read_usage(&path).unwrap().get(&entries[0].sha256), Some(&5));
        // Revoked by name (or id), the key stops working for the hub that runs.
        let ambiguous = create(&path, "cron", 3).unwrap();
        assert!(revoke(&path, "cron").is_err(), "two keys have that name");
        assert!(revoke(&path, "nobody").is_err());
        assert_eq!(revoke(&path, "backend").unwrap().name, "backend");
        let cron = read(&path).unwrap().into_iter().find(|e| e.name == "cron").unwrap();
        assert_eq!(revoke(&path, cron.id()).unwrap(), cron);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(ring.check(&key, 7).await, None, "a revoked key no longer works");
        assert_eq!(ring.check(&ambiguous, 7).await.map(|e| e.name).as_deref(), Some("cron"));
    }

    #[tokio::test]
    async fn keys_in_the_database_are_shared() {
        let store = crate::store::postgres::testing::store("api_keys").await;
        let ring = KeyRing::open(Source::Database(store.clone())).await.unwrap();
        let key = new_key();
        assert_eq!(ring.check(&key, 5).await, None);
        store.add_api_key(&hash(&key), "backend", 1).await.unwrap();
        assert_eq!(
            ring.check(&key, 5).await.map(|e| e.name).as_deref(),
            Some("backend"),
            "added elsewhere: works at once"
        );
        ring.save_usage().await.unwrap();
        assert_eq!(store.api_keys().await.unwrap()[0].3, Some(5));
        assert!(store.remove_api_key(&hash(&key)).await.unwrap());
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(ring.check(&key, 6).await, None, "revoked elsewhere");
        crate::store::postgres::testing::drop_databases("api_keys").await;
    }
}
