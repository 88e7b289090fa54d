//! The app's API keys. Only their SHA-256 is kept, one JSON line per key in
//! `<data_dir>/api-keys` (mode 0600), so a copy of the data directory does not hand out
//! working keys. `tidings hub api-key create` adds a line and `revoke` removes one while
//! the hub runs; the hub sees the change within a second. The hub notes when each key was
//! last used in `<data_dir>/api-keys.used` (written at most once a minute), which `list`
//! shows.

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

fn hash(key: &str) -> String {
    digest::digest(&digest::SHA256, key.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
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

/// Creates a key named `name`, stores its hash, and returns the key (shown once).
pub fn create(path: &Path, name: &str, now: u64) -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).map_err(|_| std::io::Error::other("no randomness"))?;
    let key = format!("{PREFIX}{}", b64::encode(&bytes));
    let mut entries = read(path)?;
    entries.push(Entry { name: name.to_owned(), sha256: hash(&key), created_at: now });
    write(path, &entries)?;
    Ok(key)
}

/// Removes the key whose id (see [`Entry::id`]) or name is `which`; returns it. A name
/// that several keys share is refused: give the id.
pub fn revoke(path: &Path, which: &str) -> std::io::Result<Entry> {
    let mut entries = read(path)?;
    let by_id = |e: &Entry| which.len() >= 8 && e.sha256.starts_with(&which.to_ascii_lowercase());
    let matching: Vec<usize> =
        (0..entries.len()).filter(|&i| by_id(&entries[i]) || entries[i].name == which).collect();
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    let index = match matching[..] {
        [index] => index,
        [] => {
            return Err(invalid(format!(
                "no API key has the id or name {which:?} (tidings hub api-key list)"
            )));
        }
        _ => {
            return Err(invalid(format!(
                "several API keys match {which:?}; give the id (tidings hub api-key list)"
            )));
        }
    };
    let removed = entries.remove(index);
    write(path, &entries)?;
    Ok(removed)
}

/// When each key was last used (by hash), as the hub last wrote it.
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

/// The keys the hub accepts, re-read when the file changes.
pub struct KeyRing {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    checked: Instant,
    modified: Option<(SystemTime, u64)>,
    entries: Vec<Entry>,
    /// Last use of each key, by hash, and whether it changed since it was written.
    used: BTreeMap<String, u64>,
    unsaved: bool,
}

impl KeyRing {
    /// The keys in `path`.
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let entries = read(&path)?;
        let modified = version(&path);
        let used = read_usage(&path).unwrap_or_default();
        let state = State { checked: Instant::now(), modified, entries, used, unsaved: false };
        Ok(Self { path, state: Mutex::new(state) })
    }

    /// The name of the key `presented`, if it is one of ours, noting its use at `now`. The
    /// file is looked at again on every miss (so a new key works at once) and at most once a
    /// second otherwise (so a removed key stops working).
    pub fn check(&self, presented: &str, now: u64) -> Option<String> {
        let presented = hash(presented);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let known = find(&state.entries, &presented).is_some();
        state.reload_if_due(&self.path, known);
        let name = find(&state.entries, &presented)?.name.clone();
        if state.used.get(&presented) != Some(&now) {
            state.used.insert(presented, now);
            state.unsaved = true;
        }
        Some(name)
    }

    /// Writes when the keys were last used, if that changed.
    pub fn save_usage(&self) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.unsaved {
            return Ok(());
        }
        let text = serde_json::to_string(&state.used).expect("a map of numbers serializes");
        tidings_store::secret_file::write(&usage_path(&self.path), &text)?;
        state.unsaved = false;
        Ok(())
    }
}

impl State {
    /// Re-reads the file when it changed, unless the key was `known` and the file was
    /// looked at less than a second ago.
    fn reload_if_due(&mut self, path: &Path, known: bool) {
        if known && self.checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.checked = Instant::now();
        let modified = version(path);
        if modified != self.modified {
            match read(path) {
                Ok(entries) => {
                    self.entries = entries;
                    self.modified = modified;
                }
                Err(e) => tracing::warn!(error = %e, "cannot re-read the API keys; keeping the old ones"),
            }
        }
    }
}

/// The entry of the key whose hash is `presented` (compared in constant time).
fn find<'a>(entries: &'a [Entry], presented: &str) -> Option<&'a Entry> {
    entries
        .iter()
        .find(|e| constant_time::verify_slices_are_equal(e.sha256.as_bytes(), presented.as_bytes()).is_ok())
}

/// What tells that the file changed: its modification time and length.
fn version(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_hashed_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-keys");
        let ring = KeyRing::open(path.clone()).unwrap();
        assert_eq!(ring.check("tdh_nothing", 5), None);
        let key = create(&path, "backend", 1).unwrap();
        assert!(key.starts_with(PREFIX));
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(&key[PREFIX.len()..]), "the key itself must not be stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let ring = KeyRing::open(path.clone()).unwrap();
        assert_eq!(ring.check(&key, 5).as_deref(), Some("backend"));
        assert_eq!(ring.check(&format!("{key}x"), 5), None);
        let second = create(&path, "cron", 2).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
        assert_eq!(KeyRing::open(path.clone()).unwrap().check(&second, 6).as_deref(), Some("cron"));
        // Last use is written when asked, and read back by `list`.
        assert!(read_usage(&path).unwrap().is_empty());
        ring.save_usage().unwrap();
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
        assert_eq!(ring.check(&key, 7), None, "a revoked key no longer works");
        assert_eq!(ring.check(&ambiguous, 7).as_deref(), Some("cron"));
    }
}
