//! The link port: how a device meets its peers, whatever carries the bytes (matchbox WebRTC
//! in the browser, native WebRTC in a node, [`MemoryNet`] in tests).
//!
//! A [`Router`] owns the current socket and the retired ones: a socket whose signaling was
//! lost is kept for the peers it still reaches while a new one meets the world again, and
//! closes once the new one reaches the same devices ([`super::presence::retired_may_close`]).
//! Frames go out on whichever socket holds the peer.

use crate::ids::DeviceId;
use crate::replica::PeerKey;
use crate::seal::Lane;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

/// What a link reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A peer's channels are open.
    Up(PeerKey),
    /// A peer went away.
    Down(PeerKey),
    /// Bytes from a peer (untrusted) on a lane.
    Frame {
        /// The sender.
        peer: PeerKey,
        /// The channel it came on.
        lane: Lane,
        /// The packet.
        bytes: Vec<u8>,
    },
}

/// What the replica makes of it.
impl From<LinkEvent> for crate::replica::Input {
    fn from(event: LinkEvent) -> Self {
        use crate::replica::Input;
        match event {
            LinkEvent::Up(peer) => Input::PeerUp(peer),
            LinkEvent::Down(peer) => Input::PeerDown(peer),
            LinkEvent::Frame {
                peer,
                lane: Lane::Main,
                bytes,
            } => Input::Frame { peer, frame: bytes },
            LinkEvent::Frame {
                peer,
                lane: Lane::Bulk,
                bytes,
            } => Input::BulkFrame { peer, frame: bytes },
        }
    }
}

/// One socket to a room and the peers met through it.
pub trait Link {
    /// Why a send failed.
    type Error: std::error::Error;
    /// Events since the last poll, in order.
    fn poll(&mut self) -> Vec<LinkEvent>;
    /// The peers this socket reaches now.
    fn peer_keys(&self) -> Vec<PeerKey>;
    /// Whether this socket reaches `peer` (asked per send: override when cheaper).
    fn has_peer(&self, peer: &PeerKey) -> bool {
        self.peer_keys().contains(peer)
    }
    /// Sends one packet to a peer on a lane.
    fn send(&mut self, peer: &PeerKey, lane: Lane, frame: Vec<u8>) -> Result<(), Self::Error>;
    /// Closed for good (nothing more will come).
    fn is_closed(&self) -> bool;
    /// Closes the socket; returns the peers that were reached through it (now down).
    fn close(self) -> Vec<PeerKey>;
}

/// A send the router could not make.
#[derive(Debug, thiserror::Error)]
pub enum RouteError<E: std::error::Error> {
    /// No socket reaches the peer (it went away, or never came).
    #[error("peer {0} is not connected")]
    NotConnected(PeerKey),
    /// The socket refused it.
    #[error(transparent)]
    Link(E),
}

/// The current socket and the retired ones (see the module docs).
#[derive(Debug)]
pub struct Router<L> {
    current: Option<L>,
    retired: Vec<L>,
}

impl<L> Default for Router<L> {
    fn default() -> Self {
        Router {
            current: None,
            retired: Vec::new(),
        }
    }
}

impl<L: Link> Router<L> {
    /// The socket that meets the world now.
    pub fn current(&self) -> Option<&L> {
        self.current.as_ref()
    }

    /// The same, to poll its state.
    pub fn current_mut(&mut self) -> Option<&mut L> {
        self.current.as_mut()
    }

    /// There is a current socket.
    pub fn is_connected(&self) -> bool {
        self.current.is_some()
    }

    /// Sockets kept only for their peers.
    pub fn retired(&self) -> usize {
        self.retired.len()
    }

    /// A new current socket. One still open is retired first (kept for its peers).
    pub fn connect(&mut self, link: L) {
        self.retire();
        self.current = Some(link);
    }

    /// Retires the current socket (dropped when it is closed already: its peers were
    /// reported down by its last poll).
    pub fn retire(&mut self) {
        if let Some(old) = self.current.take()
            && !old.is_closed()
        {
            self.retired.push(old);
        }
    }

    /// The socket that reaches `peer` (the current one first).
    pub fn link_of(&self, peer: &PeerKey) -> Option<&L> {
        self.current
            .iter()
            .chain(&self.retired)
            .find(|l| l.has_peer(peer))
    }

    /// Events of every socket: the retired ones first (older), then the current one.
    pub fn poll(&mut self) -> Vec<LinkEvent> {
        let mut events = Vec::new();
        for link in &mut self.retired {
            events.extend(link.poll());
        }
        if let Some(link) = &mut self.current {
            events.extend(link.poll());
        }
        events
    }

    /// Sends on the socket that reaches `peer` (the current one first).
    pub fn send(
        &mut self,
        peer: &PeerKey,
        lane: Lane,
        frame: Vec<u8>,
    ) -> Result<(), RouteError<L::Error>> {
        let link = self
            .current
            .iter_mut()
            .chain(self.retired.iter_mut())
            .find(|l| l.has_peer(peer))
            .ok_or_else(|| RouteError::NotConnected(peer.clone()))?;
        link.send(peer, lane, frame).map_err(RouteError::Link)
    }

    /// Closes the retired sockets whose every peer is a device the current socket reaches
    /// again (and those with no peer left). `device_of` names the device behind a peer, once
    /// it proved who it is. Returns the peers that went down with them: not a peer the
    /// current socket reaches under the same key (the other device kept its socket, so both
    /// of ours met it under its one id), whose session lives on there.
    pub fn close_retired(
        &mut self,
        device_of: impl Fn(&PeerKey) -> Option<DeviceId>,
    ) -> Vec<PeerKey> {
        let reached = self
            .current
            .as_ref()
            .map(Link::peer_keys)
            .unwrap_or_default();
        let current: Vec<DeviceId> = reached.iter().filter_map(&device_of).collect();
        let mut down = Vec::new();
        let mut keep = Vec::new();
        for link in std::mem::take(&mut self.retired) {
            let behind: Vec<Option<DeviceId>> = link.peer_keys().iter().map(&device_of).collect();
            if super::presence::retired_may_close(&behind, &current) {
                down.extend(link.close().into_iter().filter(|p| !reached.contains(p)));
            } else {
                keep.push(link);
            }
        }
        self.retired = keep;
        down
    }

    /// Closes every socket (leaving the room); returns every peer that went down.
    pub fn close_all(&mut self) -> Vec<PeerKey> {
        let mut down = Vec::new();
        for link in self
            .current
            .take()
            .into_iter()
            .chain(self.retired.drain(..))
        {
            down.extend(link.close());
        }
        down
    }
}

/// An in-memory network of sockets, for host tests and native peers in one process: sockets
/// join by name, [`MemoryNet::connect`] opens a pair of channels between two, frames arrive
/// in order, [`MemoryNet::cut`] takes a pair down.
#[derive(Debug, Clone, Default)]
pub struct MemoryNet {
    inner: Rc<RefCell<NetState>>,
}

#[derive(Debug, Default)]
struct NetState {
    /// Per socket: its events not yet polled.
    queues: BTreeMap<String, VecDeque<LinkEvent>>,
    /// Connected pairs (each name as the other sees it).
    pairs: BTreeSet<(String, String)>,
    closed: BTreeSet<String>,
}

/// One socket of a [`MemoryNet`].
#[derive(Debug)]
pub struct MemoryLink {
    name: String,
    net: MemoryNet,
}

/// A send on a memory link to a peer it does not reach.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not connected")]
pub struct NotConnected(pub String);

impl MemoryNet {
    /// A socket named `name` (peers see it as `PeerKey::rtc(name)`).
    pub fn open(&self, name: &str) -> MemoryLink {
        let mut s = self.inner.borrow_mut();
        s.queues.entry(name.to_owned()).or_default();
        s.closed.remove(name);
        MemoryLink {
            name: name.to_owned(),
            net: self.clone(),
        }
    }

    /// Opens channels between two open sockets: each sees the other come up.
    pub fn connect(&self, a: &str, b: &str) {
        let mut s = self.inner.borrow_mut();
        if a == b || s.closed.contains(a) || s.closed.contains(b) {
            return;
        }
        if !s.queues.contains_key(a) || !s.queues.contains_key(b) {
            return;
        }
        if s.pairs.insert((a.to_owned(), b.to_owned())) {
            s.pairs.insert((b.to_owned(), a.to_owned()));
            for (me, other) in [(a, b), (b, a)] {
                if let Some(q) = s.queues.get_mut(me) {
                    q.push_back(LinkEvent::Up(PeerKey::rtc(other)));
                }
            }
        }
    }

    /// Takes the channels between two sockets down: each sees the other go.
    pub fn cut(&self, a: &str, b: &str) {
        let mut s = self.inner.borrow_mut();
        Self::cut_pair(&mut s, a, b);
    }

    fn cut_pair(s: &mut NetState, a: &str, b: &str) {
        if s.pairs.remove(&(a.to_owned(), b.to_owned())) {
            s.pairs.remove(&(b.to_owned(), a.to_owned()));
            for (me, other) in [(a, b), (b, a)] {
                if let Some(q) = s.queues.get_mut(me) {
                    q.push_back(LinkEvent::Down(PeerKey::rtc(other)));
                }
            }
        }
    }
}

impl Link for MemoryLink {
    type Error = NotConnected;

    fn poll(&mut self) -> Vec<LinkEvent> {
        let mut s = self.net.inner.borrow_mut();
        s.queues
            .get_mut(&self.name)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    fn peer_keys(&self) -> Vec<PeerKey> {
        let s = self.net.inner.borrow();
        s.pairs
            .iter()
            .filter(|(me, _)| *me == self.name)
            .map(|(_, other)| PeerKey::rtc(other.as_str()))
            .collect()
    }

    fn send(&mut self, peer: &PeerKey, lane: Lane, frame: Vec<u8>) -> Result<(), NotConnected> {
        let mut s = self.net.inner.borrow_mut();
        let to = peer.id.clone();
        if !s.pairs.contains(&(self.name.clone(), to.clone())) {
            return Err(NotConnected(to));
        }
        let event = LinkEvent::Frame {
            peer: PeerKey::rtc(self.name.as_str()),
            lane,
            bytes: frame,
        };
        s.queues.entry(to).or_default().push_back(event);
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.net.inner.borrow().closed.contains(&self.name)
    }

    fn close(self) -> Vec<PeerKey> {
        let mut s = self.net.inner.borrow_mut();
        let others: Vec<String> = s
            .pairs
            .iter()
            .filter(|(me, _)| *me == self.name)
            .map(|(_, o)| o.clone())
            .collect();
        for o in &others {
            MemoryNet::cut_pair(&mut s, &self.name, o);
        }
        s.queues.remove(&self.name);
        s.closed.insert(self.name.clone());
        others.iter().map(|o| PeerKey::rtc(o.as_str())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::SpaceSecret;
    use crate::replica::{Effect, Input, Replica};

    /// Feeds a router's events to its replica and routes what the replica sends: one turn.
    fn turn(replica: &mut Replica, router: &mut Router<MemoryLink>) -> Vec<Effect> {
        let mut seen = Vec::new();
        let mut queue: VecDeque<Input> = router.poll().into_iter().map(Input::from).collect();
        while let Some(input) = queue.pop_front() {
            for e in replica.handle(input) {
                match &e {
                    Effect::Send { peer, frame } => {
                        let _ = router.send(peer, Lane::Main, frame.clone());
                    }
                    Effect::SendBulk { peer, frame } => {
                        let _ = router.send(peer, Lane::Bulk, frame.clone());
                    }
                    _ => {}
                }
                seen.push(e);
            }
        }
        seen
    }

    fn texts(r: &Replica) -> Vec<String> {
        r.items().into_iter().map(|i| i.text).collect()
    }

    /// Routes a local change's frames.
    fn local(router: &mut Router<MemoryLink>, effects: Vec<Effect>) {
        for e in effects {
            if let Effect::Send { peer, frame } = e {
                let _ = router.send(&peer, Lane::Main, frame);
            }
        }
    }

    /// Two real replicas over memory sockets: they authenticate and sync. Then A's signaling
    /// is lost: its old socket is retired while a new one meets the world, texts keep flowing
    /// on whichever socket reaches B, and the old one closes once the new one reaches B.
    #[test]
    fn replicas_sync_over_memory_links_and_a_retired_socket_closes_once_replaced() {
        let secret = SpaceSecret::random();
        let net = MemoryNet::default();
        let (a_id, b_id) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
        let mut a = Replica::new(a_id, "A", &secret).unwrap();
        let mut b = Replica::new(b_id, "B", &secret).unwrap();
        let (mut ra, mut rb) = (Router::default(), Router::default());
        ra.connect(net.open("a1"));
        rb.connect(net.open("b1"));
        net.connect("a1", "b1");
        let mut devices: BTreeMap<PeerKey, DeviceId> = BTreeMap::new();
        let mut run = |a: &mut Replica, b: &mut Replica, ra: &mut Router<_>, rb: &mut Router<_>| {
            for _ in 0..20 {
                for e in turn(a, ra).into_iter().chain(turn(b, rb)) {
                    if let Effect::PeerIdentified { peer, device, .. } = e {
                        devices.insert(peer, device);
                    }
                }
            }
            devices.clone()
        };
        let (_, eff) = a.add_text("hello", 1).unwrap();
        local(&mut ra, eff);
        let devs = run(&mut a, &mut b, &mut ra, &mut rb);
        assert_eq!(texts(&b), vec!["hello"]);
        assert_eq!(devs.get(&PeerKey::rtc("b1")), Some(&b_id));
        assert_eq!(devs.get(&PeerKey::rtc("a1")), Some(&a_id));

        // A's signaling is lost: a new socket; the old one is kept for B.
        ra.connect(net.open("a2"));
        assert_eq!(ra.retired(), 1);
        let of = |d: &BTreeMap<PeerKey, DeviceId>| {
            let d = d.clone();
            move |p: &PeerKey| d.get(p).copied()
        };
        assert!(ra.close_retired(of(&devs)).is_empty());
        assert_eq!(ra.retired(), 1, "B is reached only through the old one");
        let (_, eff) = a.add_text("still here", 2).unwrap();
        local(&mut ra, eff);
        run(&mut a, &mut b, &mut ra, &mut rb);
        assert!(
            texts(&b).contains(&"still here".to_owned()),
            "via the retired socket"
        );

        // The new socket reaches B: the old one closes, and B, met again under the same key,
        // is not reported down.
        net.connect("a2", "b1");
        let devs = run(&mut a, &mut b, &mut ra, &mut rb);
        assert_eq!(ra.close_retired(of(&devs)), vec![]);
        assert_eq!(ra.retired(), 0);
        let (_, eff) = a.add_text("over the new one", 3).unwrap();
        local(&mut ra, eff);
        run(&mut a, &mut b, &mut ra, &mut rb);
        assert!(texts(&b).contains(&"over the new one".to_owned()));
        let (_, eff) = b.add_text("and back", 4).unwrap();
        local(&mut rb, eff);
        run(&mut a, &mut b, &mut ra, &mut rb);
        assert!(texts(&a).contains(&"and back".to_owned()));

        // Leaving: every peer goes down, and sends have nowhere to go.
        assert_eq!(ra.close_all(), vec![PeerKey::rtc("b1")]);
        assert!(matches!(
            ra.send(&PeerKey::rtc("b1"), Lane::Main, vec![1]),
            Err(RouteError::NotConnected(_))
        ));
    }

    /// A retired socket whose peer never proved who it is, or is a device the new socket does
    /// not reach, stays; one with no peer left is dropped.
    #[test]
    fn a_retired_socket_stays_while_it_alone_reaches_a_device() {
        let net = MemoryNet::default();
        let mut r = Router::default();
        r.connect(net.open("me1"));
        let _phone = net.open("phone");
        net.connect("me1", "phone");
        r.connect(net.open("me2"));
        assert!(r.close_retired(|_| None).is_empty());
        assert_eq!(r.retired(), 1, "an unidentified peer keeps it");
        let phone = DeviceId::from_bytes([9; 16]);
        assert!(r.close_retired(|_| Some(phone)).is_empty());
        assert_eq!(r.retired(), 1, "the new socket does not reach the phone");
        net.cut("me1", "phone");
        assert!(r.close_retired(|_| Some(phone)).is_empty());
        assert_eq!(r.retired(), 0, "nobody left behind it");
    }
}
