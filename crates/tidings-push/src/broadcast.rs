//! Broadcasts, autopush's "megaphone": named versions (say `remote-settings/monitor_changes`
//! at `"1712345678901"`) that every user agent following them hears of as soon as they
//! change, over the WebSocket it already holds. Firefox follows Remote Settings this way and
//! polls for new settings when told, instead of on a timer.
//!
//! This module is the node's [`Table`] of current versions and the rules for ids and
//! versions (user agents may send any id: one the node does not know is answered as unknown); [`crate::session`] decides what each connection is told, [`crate::admin`] and
//! [`crate::megaphone`] change versions, and the store shares them between nodes.
//!
//! A connection remembers what it follows as [`Key`]s into the table, and the table counts
//! its changes: a connection that has seen the table up to change `n` is told of every
//! broadcast it follows that changed after `n`. So a follower costs a few bytes per
//! broadcast, and comparing is cheap however long the versions are.

use std::collections::HashMap;
use tidings_wire::ws::Broadcasts;

/// The most broadcasts one connection may follow. Firefox follows one or two; more is a
/// client trying to make its connection expensive.
pub const MAX_FOLLOWED: usize = 64;
/// The longest broadcast id, in bytes (Firefox's is 31).
pub const MAX_ID_LEN: usize = 128;
/// The longest version, in bytes (Remote Settings sends a quoted timestamp, 15).
pub const MAX_VERSION_LEN: usize = 256;
/// The most broadcasts a node keeps: versions come from operators, but a runaway source
/// must not grow the table without bound.
pub const MAX_BROADCASTS: usize = 1024;

/// A broadcast's index in the [`Table`]; stable for the life of the process.
pub type Key = u32;

/// Why a broadcast id or version is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// An id that is empty, too long, has control characters, or is `errors`.
    #[error(
        "a broadcast id is 1 to {MAX_ID_LEN} bytes without control characters, and not \"errors\" (the name of the map of unknown ids)"
    )]
    Id,
    /// A version that is too long or has control characters.
    #[error("a broadcast version is at most {MAX_VERSION_LEN} bytes without control characters")]
    Version,
    /// The table holds [`MAX_BROADCASTS`] already.
    #[error("this node already keeps {MAX_BROADCASTS} broadcasts")]
    TooMany,
}

/// Checks a broadcast id and version from an operator (the admin route or a megaphone API).
/// `errors` is refused as an id because the answer to a user agent puts the unknown ids in a
/// member of that name, beside the versions.
pub fn check(id: &str, version: &str) -> Result<(), Invalid> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.contains(char::is_control) || id == "errors" {
        return Err(Invalid::Id);
    }
    if version.is_empty() || version.len() > MAX_VERSION_LEN || version.contains(char::is_control) {
        return Err(Invalid::Version);
    }
    Ok(())
}

#[derive(Debug)]
struct Entry {
    id: String,
    version: String,
    /// The table's change count when this version was set.
    changed_at: u64,
}

/// The current version of every broadcast this node knows, with a count of changes.
#[derive(Debug, Default)]
pub struct Table {
    entries: Vec<Entry>,
    keys: HashMap<String, Key>,
    changes: u64,
}

impl Table {
    /// Whether [`Table::set`] would take this id and version: both [checked](check), and room
    /// for a new id.
    pub fn admits(&self, id: &str, version: &str) -> Result<(), Invalid> {
        check(id, version)?;
        if self.entries.len() >= MAX_BROADCASTS && self.key(id).is_none() {
            return Err(Invalid::TooMany);
        }
        Ok(())
    }

    /// Sets a broadcast's version; whether that changed anything (a new id, or another
    /// version). Refused unless the table [admits](Table::admits) it.
    pub fn set(&mut self, id: &str, version: &str) -> Result<bool, Invalid> {
        self.admits(id, version)?;
        match self.keys.get(id).and_then(|&key| self.entries.get_mut(key as usize)) {
            Some(entry) if entry.version == version => return Ok(false),
            Some(entry) => {
                self.changes += 1;
                entry.version = version.to_owned();
                entry.changed_at = self.changes;
            }
            None => {
                let key = Key::try_from(self.entries.len()).map_err(|_| Invalid::TooMany)?;
                self.changes += 1;
                let entry =
                    Entry { id: id.to_owned(), version: version.to_owned(), changed_at: self.changes };
                self.entries.push(entry);
                self.keys.insert(id.to_owned(), key);
            }
        }
        Ok(true)
    }

    /// The key of a broadcast this node knows.
    pub fn key(&self, id: &str) -> Option<Key> {
        self.keys.get(id).copied()
    }

    /// A broadcast's id and current version.
    pub fn get(&self, key: Key) -> Option<(&str, &str)> {
        self.entries.get(key as usize).map(|e| (e.id.as_str(), e.version.as_str()))
    }

    /// How many changes the table has seen; a connection records it to know what is news.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether the broadcast changed after change number `seen`.
    pub fn changed_since(&self, key: Key, seen: u64) -> bool {
        self.entries.get(key as usize).is_some_and(|e| e.changed_at > seen)
    }

    /// The version of `id`, if the node knows it.
    pub fn version(&self, id: &str) -> Option<&str> {
        self.key(id).and_then(|key| self.get(key)).map(|(_, version)| version)
    }

    /// Every broadcast and its version, in the shape of a megaphone API answer.
    pub fn all(&self) -> Broadcasts {
        let versions = self.entries.iter().map(|e| (e.id.clone(), e.version.clone())).collect();
        Broadcasts { versions, errors: Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_change_and_are_counted() {
        let mut table = Table::default();
        assert_eq!(table.set("kinto:123", "v1"), Ok(true));
        let key = table.key("kinto:123").unwrap();
        let seen = table.changes();
        assert_eq!(table.set("kinto:123", "v1"), Ok(false), "the same version is no change");
        assert!(!table.changed_since(key, seen));
        assert_eq!(table.set("kinto:123", "v2"), Ok(true));
        assert!(table.changed_since(key, seen));
        assert_eq!(table.get(key), Some(("kinto:123", "v2")));
        assert_eq!(table.version("kinto:123"), Some("v2"));
        assert_eq!(table.version("other"), None);
        assert_eq!(table.key("kinto:123"), Some(key), "keys are stable");
    }

    #[test]
    fn bad_ids_and_versions_are_refused() {
        let mut table = Table::default();
        for id in ["", "errors", "a\nb", &"x".repeat(MAX_ID_LEN + 1)] {
            assert_eq!(table.set(id, "v"), Err(Invalid::Id), "{id:?}");
        }
        for version in ["", "a\u{0}", &"x".repeat(MAX_VERSION_LEN + 1)] {
            assert_eq!(table.set("a", version), Err(Invalid::Version), "{version:?}");
        }
        assert_eq!(table.set(&"x".repeat(MAX_ID_LEN), &"v".repeat(MAX_VERSION_LEN)), Ok(true));
        assert_eq!(table.changes(), 1, "refusals change nothing");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = Table::default();
        for n in 0..MAX_BROADCASTS {
            table.set(&format!("b{n}"), "1").unwrap();
        }
        assert_eq!(table.set("one more", "1"), Err(Invalid::TooMany));
        assert_eq!(table.set("b0", "2"), Ok(true), "known ones still change");
    }
}
