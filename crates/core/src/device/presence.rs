//! Being reachable: when to replace a signaling socket that went away, and when a socket
//! kept only for its peers (retired) may close. Time and jitter come from outside, so every
//! rule is tested deterministically on the host.

use crate::ids::DeviceId;

/// Reconnect backoff bounds (ms).
pub const BACKOFF_MIN_MS: u64 = 1_000;
/// The longest wait between attempts (ms): a phone back in coverage is found within seconds.
pub const BACKOFF_MAX_MS: u64 = 10_000;

/// What the current signaling socket is doing, as the link adapter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// No socket (no signaling endpoint known, or not this tab's job).
    None,
    /// Connecting, or connected to peers while signaling is not confirmed yet.
    Connecting,
    /// Signaling works.
    Signaling,
    /// Closed, or its signaling connection was lost (peers may live on).
    Lost,
}

/// What to do with the socket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Nothing.
    Wait,
    /// Open a new socket; keep the old one (if not closed) for its peers until the new one
    /// reaches the same devices.
    Replace,
}

/// Reconnect timing with exponential backoff and ±20 % jitter (devices that lost the same
/// server do not come back in lockstep).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    backoff_ms: u64,
    at: Option<u64>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            backoff_ms: BACKOFF_MIN_MS,
            at: None,
        }
    }
}

impl Backoff {
    /// One turn: `jitter` in `[0, 1)` from the caller's randomness.
    pub fn turn(&mut self, now_ms: u64, socket: Socket, jitter: f64) -> Reconnect {
        match socket {
            Socket::Lost => match self.at {
                None => {
                    let spread = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
                    self.at = Some(now_ms + (self.backoff_ms as f64 * spread) as u64);
                    self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
                    Reconnect::Wait
                }
                Some(at) if now_ms >= at => {
                    self.at = None;
                    Reconnect::Replace
                }
                Some(_) => Reconnect::Wait,
            },
            Socket::Signaling => {
                self.backoff_ms = BACKOFF_MIN_MS;
                Reconnect::Wait
            }
            Socket::None | Socket::Connecting => Reconnect::Wait,
        }
    }

    /// Whether a reconnect is scheduled (then no new socket is opened before it is due).
    pub fn waiting(&self) -> bool {
        self.at.is_some()
    }

    /// Settings changed (or another space was joined): the next attempt is immediate and
    /// the backoff starts over.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// The delay the next loss will wait (before jitter), for diagnostics and tests.
    pub fn next_delay_ms(&self) -> u64 {
        self.backoff_ms
    }
}

/// Whether a retired socket may close: it has no peers left, or every one of its peers is a
/// device the current socket reaches too. `peers` are the devices behind the retired
/// socket's peers (`None`: a peer not identified yet, which keeps it open).
pub fn retired_may_close(peers: &[Option<DeviceId>], current: &[DeviceId]) -> bool {
    peers
        .iter()
        .all(|p| p.is_some_and(|d| current.contains(&d)))
}

/// Other devices reached (sibling tabs share this device's id and do not count).
pub fn remote_devices(me: DeviceId, peers: impl IntoIterator<Item = DeviceId>) -> usize {
    let mut ids: Vec<DeviceId> = peers.into_iter().filter(|d| *d != me).collect();
    ids.sort();
    ids.dedup();
    ids.len()
}

/// How this device is connected, as its status line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Connectivity {
    /// Starting, or reaching the signaling endpoint again.
    #[default]
    Connecting,
    /// Reachable: `peers` other devices connected (0 = signaling works, nobody else here).
    Online {
        /// Other devices connected, directly or through the sibling tab that owns WebRTC.
        peers: usize,
    },
    /// No signaling and no other device.
    Offline,
}

/// The signaling socket as the executor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketSeen {
    /// Closed for good.
    pub closed: bool,
    /// Signaling works (the server assigned this socket an id).
    pub signaling: bool,
}

/// The status line's state: `remote` devices connected here, this tab's signaling socket (if
/// any), and whether a sibling tab owns WebRTC instead (`via_tabs`: the devices that tab
/// reaches; `None` when this tab is the owner or there are no sibling tabs).
pub fn connectivity(
    remote: usize,
    socket: Option<SocketSeen>,
    via_tabs: Option<usize>,
) -> Connectivity {
    if remote > 0 {
        return Connectivity::Online { peers: remote };
    }
    match (socket, via_tabs) {
        (None, Some(peers)) => Connectivity::Online { peers },
        (None, None) => Connectivity::Offline,
        (Some(s), _) if s.closed => Connectivity::Offline,
        (Some(s), _) if s.signaling => Connectivity::Online { peers: 0 },
        (Some(_), _) => Connectivity::Connecting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_follows_devices_then_the_socket_then_the_owning_tab() {
        let up = SocketSeen {
            closed: false,
            signaling: true,
        };
        let dialing = SocketSeen {
            closed: false,
            signaling: false,
        };
        let closed = SocketSeen {
            closed: true,
            signaling: false,
        };
        // Devices connected win, whatever the socket does.
        assert_eq!(
            connectivity(2, Some(closed), None),
            Connectivity::Online { peers: 2 }
        );
        assert_eq!(
            connectivity(1, None, Some(3)),
            Connectivity::Online { peers: 1 }
        );
        // Alone: the socket says it.
        assert_eq!(
            connectivity(0, Some(up), None),
            Connectivity::Online { peers: 0 }
        );
        assert_eq!(
            connectivity(0, Some(dialing), None),
            Connectivity::Connecting
        );
        assert_eq!(connectivity(0, Some(closed), None), Connectivity::Offline);
        assert_eq!(connectivity(0, None, None), Connectivity::Offline);
        // A tab that leaves WebRTC to a sibling shows what the sibling reaches.
        assert_eq!(
            connectivity(0, None, Some(2)),
            Connectivity::Online { peers: 2 }
        );
        assert_eq!(
            connectivity(0, None, Some(0)),
            Connectivity::Online { peers: 0 }
        );
    }
    use proptest::prelude::*;

    #[test]
    fn a_lost_socket_is_replaced_after_a_growing_jittered_wait() {
        let mut b = Backoff::default();
        // First loss: wait 1 s (±20 %), then replace.
        assert_eq!(b.turn(0, Socket::Lost, 0.5), Reconnect::Wait);
        assert!(b.waiting());
        assert_eq!(b.turn(999, Socket::Lost, 0.5), Reconnect::Wait);
        assert_eq!(b.turn(1_000, Socket::Lost, 0.5), Reconnect::Replace);
        assert!(!b.waiting());
        // Still lost: 2 s, then 4, 8, and never more than 10.
        let mut now = 1_000;
        for want in [2_000, 4_000, 8_000, 10_000, 10_000] {
            assert_eq!(b.turn(now, Socket::Lost, 0.5), Reconnect::Wait);
            assert_eq!(b.turn(now + want - 1, Socket::Lost, 0.5), Reconnect::Wait);
            assert_eq!(b.turn(now + want, Socket::Lost, 0.5), Reconnect::Replace);
            now += want;
        }
        // Signaling works again: the next loss waits the minimum.
        assert_eq!(b.turn(now, Socket::Signaling, 0.5), Reconnect::Wait);
        assert_eq!(b.next_delay_ms(), BACKOFF_MIN_MS);
        b.turn(now, Socket::Lost, 0.0);
        assert_eq!(b.turn(now + 799, Socket::Lost, 0.0), Reconnect::Wait);
        assert_eq!(b.turn(now + 800, Socket::Lost, 0.0), Reconnect::Replace);
    }

    #[test]
    fn connecting_keeps_the_backoff_and_reset_starts_over() {
        let mut b = Backoff::default();
        b.turn(0, Socket::Lost, 0.5);
        b.turn(1_000, Socket::Lost, 0.5);
        assert_eq!(b.turn(5_000, Socket::Connecting, 0.5), Reconnect::Wait);
        assert_eq!(b.next_delay_ms(), 2_000, "connecting is not yet working");
        b.turn(6_000, Socket::Lost, 0.5);
        b.reset();
        assert!(!b.waiting());
        assert_eq!(b.next_delay_ms(), BACKOFF_MIN_MS);
    }

    #[test]
    fn a_retired_socket_closes_once_its_devices_are_reached_again() {
        let (a, b) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
        assert!(retired_may_close(&[], &[]), "no peers left");
        assert!(!retired_may_close(&[Some(a)], &[]));
        assert!(!retired_may_close(&[Some(a), Some(b)], &[a]));
        assert!(retired_may_close(&[Some(a), Some(b)], &[b, a]));
        assert!(!retired_may_close(&[None], &[a]), "not identified yet");
    }

    #[test]
    fn sibling_tabs_are_not_other_devices() {
        let (me, a) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
        assert_eq!(remote_devices(me, [me, a, a, me]), 1);
        assert_eq!(remote_devices(me, [me]), 0);
    }

    proptest! {
        /// Whatever the jitter, waits stay within ±20 % of the backoff and never exceed
        /// 12 s, and a lost socket is always replaced eventually.
        #[test]
        fn waits_are_bounded(jitters in prop::collection::vec(0.0f64..1.0, 1..20)) {
            let mut b = Backoff::default();
            let mut now = 0u64;
            for j in jitters {
                let base = b.next_delay_ms();
                prop_assert_eq!(b.turn(now, Socket::Lost, j), Reconnect::Wait);
                let mut waited = 0;
                while b.turn(now + waited, Socket::Lost, j) == Reconnect::Wait {
                    waited += 10;
                    prop_assert!(waited <= 12_000);
                }
                prop_assert!(waited as f64 >= base as f64 * 0.8 - 10.0);
                prop_assert!(waited as f64 <= base as f64 * 1.2 + 10.0);
                now += waited;
            }
        }
    }
}
