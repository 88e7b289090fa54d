//! The app's API keys. Only their SHA-256 is kept, one JSON line per key in
//! `<data_dir>/api-keys` (mode 0600), so a copy of the data directory does not hand out
//! working keys. `tidings hub api-key create` adds a line while the hub runs; the hub sees
//! the change within a second.

use aws_lc_rs::{constant_time, digest, rand};
use serde::{Deserialize, Serialize};
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

/// Creates a key named `name`, stores its hash, and returns the key (shown once).
pub fn create(path: &Path, name: &str, now: u64) -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).map_err(|_| std::io::Error::other("no randomness"))?;
    let key = format!("{PREFIX}{}", b64::encode(&bytes));
    let mut entries = read(path)?;
    entries.push(Entry { name: name.to_owned(), sha256: hash(&key), created_at: now });
    let text: String =
        entries.iter().map(|e| serde_json::to_string(e).expect("entries serialize") + "\n").collect();
    tidings_store::secret_file::write(path, &text)?;
    Ok(key)
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
}

impl KeyRing {
    /// The keys in `path`.
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let entries = read(&path)?;
        let modified = version(&path);
        Ok(Self { path, state: Mutex::new(State { checked: Instant::now(), modified, entries }) })
    }

    /// The name of the key `presented`, if it is one of ours. The file is looked at again
    /// on every miss (so a new key works at once) and at most once a second otherwise (so
    /// a removed key stops working).
    pub fn check(&self, presented: &str) -> Option<String> {
        let presented = hash(presented);
        let find = |entries: &[Entry]| {
            entries
                .iter()
                .find(|e| {
                    constant_time::verify_slices_are_equal(e.sha256.as_bytes(), presented.as_bytes()).is_ok()
                })
                .map(|e| e.name.clone())
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let found = find(&state.entries);
        if found.is_some() && state.checked.elapsed() < Duration::from_secs(1) {
            return found;
        }
        state.checked = Instant::now();
        let modified = version(&self.path);
        if modified == state.modified {
            return found;
        }
        match read(&self.path) {
            Ok(entries) => {
                state.entries = entries;
                state.modified = modified;
            }
            Err(e) => tracing::warn!(error = %e, "cannot re-read the API keys; keeping the old ones"),
        }
        find(&state.entries)
    }
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
        assert_eq!(ring.check("tdh_nothing"), None);
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
        assert_eq!(ring.check(&key).as_deref(), Some("backend"));
        assert_eq!(ring.check(&format!("{key}x")), None);
        let second = create(&path, "cron", 2).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
        assert_eq!(KeyRing::open(path).unwrap().check(&second).as_deref(), Some("cron"));
    }
}
