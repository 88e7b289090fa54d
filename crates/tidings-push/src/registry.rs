//! The user agents connected to this node, and how a message reaches one.
//!
//! Each connection owns a [`Mailbox`]; the push API drops messages into it and wakes the
//! connection's task, and a change of broadcast versions wakes the connections that follow
//! broadcasts (only those). A mailbox holds at most [`MAILBOX_CAPACITY`] messages: beyond that it
//! only remembers that it overflowed, and the connection re-reads storage instead (every
//! message is stored before it is announced, so nothing is lost by dropping it here).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tidings_store::Message;
use tidings_wire::Uaid;
use tokio::sync::Notify;

/// Messages a mailbox holds before it falls back to "re-read storage".
pub const MAILBOX_CAPACITY: usize = 64;

/// What a connection finds in its mailbox.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Messages to send, in arrival order, with when they were handed over.
    pub messages: VecDeque<(Message, Instant)>,
    /// Messages were dropped for lack of room: read storage for them.
    pub overflowed: bool,
    /// A newer connection for the same uaid took over: close this one.
    pub replaced: bool,
    /// The service is shutting down: close so that the user agent reconnects elsewhere.
    pub going_away: bool,
    /// Broadcast versions changed: tell the user agent those of the broadcasts it follows.
    pub broadcasts: bool,
    /// Whether the connection follows broadcasts (only those are woken when versions change).
    /// The mailbox's own state rather than something delivered: it stays across
    /// [`Mailbox::take`], and lives here because it fits in room this struct has anyway, so
    /// that a connection costs no more memory for it.
    follows_broadcasts: bool,
}

/// One connection's mailbox.
#[derive(Debug)]
pub struct Mailbox {
    id: u64,
    inbox: Mutex<Delivery>,
    wake: Notify,
}

impl Mailbox {
    /// Waits until something is in the mailbox.
    pub async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Takes everything out, leaving no memory behind.
    pub fn take(&self) -> Delivery {
        let mut inbox = self.lock();
        let follows_broadcasts = inbox.follows_broadcasts;
        std::mem::replace(&mut *inbox, Delivery { follows_broadcasts, ..Delivery::default() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Delivery> {
        self.inbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn put(&self, message: Message) {
        let mut inbox = self.lock();
        if inbox.messages.len() < MAILBOX_CAPACITY {
            inbox.messages.push_back((message, Instant::now()));
        } else {
            inbox.overflowed = true;
        }
        drop(inbox);
        self.wake.notify_one();
    }

    /// Marks the connection as one that follows broadcasts, so that changes wake it. Done
    /// while the connection holds the versions it compared with (a read of the table), so that
    /// a change is either seen then or wakes it after: the changer writes the table first and
    /// wakes the followers after.
    pub fn follow_broadcasts(&self) {
        self.lock().follows_broadcasts = true;
    }

    fn broadcasts_changed(&self) {
        let mut inbox = self.lock();
        if inbox.follows_broadcasts {
            inbox.broadcasts = true;
            drop(inbox);
            self.wake.notify_one();
        }
    }

    fn replace(&self) {
        self.lock().replaced = true;
        self.wake.notify_one();
    }

    fn go_away(&self) {
        self.lock().going_away = true;
        self.wake.notify_one();
    }
}

/// The connections of this node, by uaid.
#[derive(Debug, Default)]
pub struct Registry {
    clients: RwLock<HashMap<Uaid, Arc<Mailbox>>>,
    next_id: AtomicU64,
}

impl Registry {
    /// Registers a connection for `uaid`; an older connection for it is told to close.
    pub fn connect(&self, uaid: Uaid) -> Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            inbox: Mutex::default(),
            wake: Notify::new(),
        });
        let old = self.write().insert(uaid, mailbox.clone());
        if let Some(old) = old {
            old.replace();
        }
        mailbox
    }

    /// Removes a connection, unless a newer one for the same uaid has replaced it.
    pub fn disconnect(&self, uaid: Uaid, mailbox: &Mailbox) {
        let mut clients = self.write();
        if clients.get(&uaid).is_some_and(|current| current.id == mailbox.id) {
            clients.remove(&uaid);
        }
    }

    /// Closes the uaid's connection here, because it connected to another node.
    pub fn replaced_elsewhere(&self, uaid: Uaid) {
        if let Some(mailbox) = self.clients.read().unwrap_or_else(|p| p.into_inner()).get(&uaid) {
            mailbox.replace();
        }
    }

    /// Hands a message to the uaid's connection on this node; when there is none here, the
    /// message comes back (to be routed elsewhere without a copy).
    #[must_use = "a message handed back was not delivered here"]
    pub fn deliver(&self, uaid: Uaid, message: Message) -> Option<Message> {
        let mailbox = self.clients.read().unwrap_or_else(|p| p.into_inner()).get(&uaid).cloned();
        match mailbox {
            Some(mailbox) => {
                mailbox.put(message);
                None
            }
            None => Some(message),
        }
    }

    /// The uaids connected now.
    pub fn uaids(&self) -> Vec<Uaid> {
        self.clients.read().unwrap_or_else(|poisoned| poisoned.into_inner()).keys().copied().collect()
    }

    /// Whether the uaid is connected here.
    pub fn is_connected(&self, uaid: Uaid) -> bool {
        self.clients.read().unwrap_or_else(|p| p.into_inner()).contains_key(&uaid)
    }

    /// Connected user agents.
    pub fn len(&self) -> usize {
        self.clients.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes the connections here that follow broadcasts: the versions changed.
    pub fn broadcasts_changed(&self) {
        for mailbox in self.clients.read().unwrap_or_else(|p| p.into_inner()).values() {
            mailbox.broadcasts_changed();
        }
    }

    /// Tells every connection to close (at shutdown).
    pub fn close_all(&self) {
        for mailbox in self.clients.read().unwrap_or_else(|p| p.into_inner()).values() {
            mailbox.go_away();
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Uaid, Arc<Mailbox>>> {
        self.clients.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_wire::ChannelId;

    fn message(id: u64) -> Message {
        Message {
            id,
            channel_id: ChannelId([0; 16]),
            expires_at: 0,
            topic: None,
            body: vec![],
            encoding: None,
            encryption: None,
            crypto_key: None,
        }
    }

    #[test]
    fn newest_connection_wins() {
        let registry = Registry::default();
        let uaid = Uaid([1; 16]);
        let first = registry.connect(uaid);
        let second = registry.connect(uaid);
        assert!(first.take().replaced);
        registry.disconnect(uaid, &first);
        assert!(registry.deliver(uaid, message(1)).is_none());
        assert_eq!(second.take().messages.len(), 1);
        registry.disconnect(uaid, &second);
        assert_eq!(registry.deliver(uaid, message(2)), Some(message(2)), "handed back");
        assert!(registry.is_empty());
    }

    #[test]
    fn only_followers_hear_of_broadcast_changes() {
        let registry = Registry::default();
        let (follower, other) = (registry.connect(Uaid([1; 16])), registry.connect(Uaid([2; 16])));
        follower.follow_broadcasts();
        registry.broadcasts_changed();
        assert!(follower.take().broadcasts);
        assert!(!other.take().broadcasts);
        assert!(!follower.take().broadcasts, "taken");
        registry.broadcasts_changed();
        assert!(follower.take().broadcasts, "a take does not forget that it follows");
    }

    #[test]
    fn mailbox_is_bounded() {
        let registry = Registry::default();
        let uaid = Uaid([1; 16]);
        let mailbox = registry.connect(uaid);
        for i in 0..MAILBOX_CAPACITY as u64 + 10 {
            assert!(registry.deliver(uaid, message(i)).is_none());
        }
        let delivery = mailbox.take();
        assert_eq!(delivery.messages.len(), MAILBOX_CAPACITY);
        assert!(delivery.overflowed);
        assert!(mailbox.take().messages.is_empty());
    }
}
