//! Sealed frames: every packet on every transport is encrypted and authenticated with the
//! space's frame key, so the signaling server and strangers who learn the room id can neither
//! read nor inject.
//!
//! ```text
//! sealed = version:u8 (=3) | epoch:u8 | seq:u64 LE | nonce:[u8;24] | XChaCha20-Poly1305(packet)
//! aad    = label | room id | version | epoch | seq | sender device id | challenge
//!          | sender challenge
//! label  = "ferry/frame/v3" on the main lane, "ferry/bulk/v3" on the bulk lane
//! ```
//!
//! Version 3 (issue #15) added the sender's own challenge to the binding. Version 2 bound a
//! frame to the receiver's challenge only, so a peer that reflected a device's own hello and
//! proof back at it got that proof to open: the device authenticated an echo of itself. A
//! version-2 device and a version-3 device cannot connect at all (each refuses the other's
//! version byte, the newer one naming it [`SealError::Outdated`]): update every device.
//!
//! - The *lane* is the data channel a frame travels on: texts and sync on the main lane, file
//!   chunks on the bulk lane, so a text never waits behind a file. Each lane has its own `seq`
//!   (the two channels reorder relative to each other), and the label keeps a frame of one
//!   lane from opening on the other, where its `seq` would mean something else.
//!
//! - `epoch` names the frame key (0 today; key rotation after device revocation bumps it).
//! - `seq` is strictly increasing per connection; a replayed or reordered frame is refused.
//! - `sender` is not on the wire: the receiver puts the device id it learned from the peer's
//!   hello (zeros for the hello itself), so a frame cannot be re-attributed to another device.
//! - `challenge` is the fresh random value the *receiver* sent in its hello on this connection
//!   (zeros for hellos). A frame that opens under it proves the sender holds the frame key and
//!   saw this very connection's challenge: frames recorded from an earlier connection never
//!   open again.
//! - `sender challenge` is the challenge the *sender* put in its own hello on this connection
//!   (zeros for hellos). Binding both challenges, in this order, makes a frame answer one hello
//!   pair: reflected back at its sender, the two swap places and the frame no longer opens;
//!   spliced onto a connection where the peer said hello with another challenge, neither.

use crate::pairing::SpaceSecret;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Version byte of sealed frames.
pub const SEALED_VERSION: u8 = 3;
/// Versions older devices seal with: refused, but named so the person knows what to update.
const OUTDATED_VERSIONS: std::ops::RangeInclusive<u8> = 1..=2;
/// The key epoch this build seals with.
pub const EPOCH: u8 = 0;
/// Bytes a sealed frame adds around its packet: header (1+1+8+24) and the 16-byte tag.
pub const OVERHEAD: usize = crate::budget::SEAL_OVERHEAD;
const HEADER: usize = 34;
const AAD_LABEL: &[u8] = b"ferry/frame/v3";
const BULK_AAD_LABEL: &[u8] = b"ferry/bulk/v3";

/// The data channel a frame travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lane {
    /// Handshake, sync: small and urgent.
    #[default]
    Main,
    /// File transfers: bulky, never in the way of the main lane.
    Bulk,
}

/// Why a sealed frame was refused. None of these reveal anything to the sender.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum SealError {
    /// Larger than any frame this build sends ([`crate::budget::MAX_PACKET`]).
    #[error("sealed frame too large: {0} bytes")]
    TooLarge(usize),
    /// Shorter than header plus tag.
    #[error("sealed frame truncated: {0} bytes")]
    Truncated(usize),
    /// Not a sealed frame of a version this build reads.
    #[error("unknown sealed frame version {0}")]
    UnknownVersion(u8),
    /// Sealed by an older Ferry whose handshake this build no longer accepts.
    #[error(
        "frame from an older Ferry (sealed frame version {0}): update the other device to connect"
    )]
    Outdated(u8),
    /// A key epoch this device does not have.
    #[error("frame sealed with unknown key epoch {0}")]
    UnknownEpoch(u8),
    /// Authentication failed: wrong key, tampered bytes, wrong sender or stale challenge.
    #[error("frame failed authentication")]
    Forged,
    /// `seq` did not increase: a replay or reorder.
    #[error("frame replayed or out of order (seq {seq}, last {last})")]
    Replayed {
        /// Sequence number in the frame.
        seq: u64,
        /// Last accepted sequence number.
        last: u64,
    },
}

/// The frame key of one epoch. Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct FrameKey {
    key: [u8; 32],
    room: [u8; 16],
}

impl std::fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameKey(..)")
    }
}

/// What a frame is bound to besides the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The sending device (zeros for hellos).
    pub sender: [u8; 16],
    /// The receiver's challenge for this connection (zeros for hellos).
    pub challenge: [u8; 16],
    /// The lane it travels on.
    pub lane: Lane,
    /// The sender's own challenge on this connection (zeros for hellos).
    pub sender_challenge: [u8; 16],
}

impl Binding {
    /// The binding of hello frames, sent before either side knows the other.
    pub const HELLO: Binding = Binding {
        sender: [0; 16],
        challenge: [0; 16],
        lane: Lane::Main,
        sender_challenge: [0; 16],
    };
}

impl FrameKey {
    /// Derives the frame key (epoch [`EPOCH`]) and the room binding from a space secret.
    pub fn derive(secret: &SpaceSecret) -> Self {
        let mut key = [0u8; 32];
        secret.derive("frame-key/epoch-0", &mut key);
        let mut room = [0u8; 16];
        secret.derive("room-id", &mut room);
        FrameKey { key, room }
    }

    fn aad(&self, header: &[u8], binding: &Binding) -> Vec<u8> {
        let label = match binding.lane {
            Lane::Main => AAD_LABEL,
            Lane::Bulk => BULK_AAD_LABEL,
        };
        let mut aad = Vec::with_capacity(label.len() + 16 + 10 + 48);
        aad.extend_from_slice(label);
        aad.extend_from_slice(&self.room);
        aad.extend_from_slice(&header[..10]);
        aad.extend_from_slice(&binding.sender);
        aad.extend_from_slice(&binding.challenge);
        aad.extend_from_slice(&binding.sender_challenge);
        aad
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.key.into())
    }

    /// Seals a packet.
    pub fn seal(&self, seq: u64, binding: &Binding, packet: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("the platform random number generator is unavailable");
        let mut out = Vec::with_capacity(OVERHEAD + packet.len());
        out.push(SEALED_VERSION);
        out.push(EPOCH);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&nonce);
        let aad = self.aad(&out, binding);
        let ct = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: packet,
                    aad: &aad,
                },
            )
            // Encryption only fails for messages beyond 256 GiB.
            .expect("XChaCha20-Poly1305 encryption of a bounded packet");
        out.extend_from_slice(&ct);
        out
    }

    /// Reads the sequence number of a sealed frame without authenticating it.
    pub fn peek_seq(frame: &[u8]) -> Result<u64, SealError> {
        if frame.len() > crate::budget::MAX_PACKET {
            return Err(SealError::TooLarge(frame.len()));
        }
        if frame.len() < OVERHEAD {
            return Err(SealError::Truncated(frame.len()));
        }
        if OUTDATED_VERSIONS.contains(&frame[0]) {
            return Err(SealError::Outdated(frame[0]));
        }
        if frame[0] != SEALED_VERSION {
            return Err(SealError::UnknownVersion(frame[0]));
        }
        if frame[1] != EPOCH {
            return Err(SealError::UnknownEpoch(frame[1]));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&frame[2..10]);
        Ok(u64::from_le_bytes(seq))
    }

    /// Opens a sealed frame bound to `binding`, requiring `seq > last_seq`.
    pub fn open(
        &self,
        frame: &[u8],
        binding: &Binding,
        last_seq: u64,
    ) -> Result<(u64, Vec<u8>), SealError> {
        let seq = Self::peek_seq(frame)?;
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&frame[10..HEADER]);
        let aad = self.aad(frame, binding);
        let packet = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &frame[HEADER..],
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Forged)?;
        if seq <= last_seq {
            return Err(SealError::Replayed {
                seq,
                last: last_seq,
            });
        }
        Ok((seq, packet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> FrameKey {
        FrameKey::derive(&SpaceSecret::from_bytes([b; 32]))
    }

    const B: Binding = Binding {
        sender: [1; 16],
        challenge: [2; 16],
        lane: Lane::Main,
        sender_challenge: [4; 16],
    };

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = key(1);
        let sealed = k.seal(5, &B, b"packet");
        assert_eq!(k.open(&sealed, &B, 4).unwrap(), (5, b"packet".to_vec()));
        assert_eq!(
            key(2).open(&sealed, &B, 0),
            Err(SealError::Forged),
            "other space"
        );
        let other_sender = Binding {
            sender: [9; 16],
            ..B
        };
        assert_eq!(k.open(&sealed, &other_sender, 0), Err(SealError::Forged));
        let stale = Binding {
            challenge: [3; 16],
            ..B
        };
        assert_eq!(
            k.open(&sealed, &stale, 0),
            Err(SealError::Forged),
            "old connection"
        );
        assert_eq!(
            k.open(&sealed, &B, 5),
            Err(SealError::Replayed { seq: 5, last: 5 })
        );
        let bulk = Binding {
            lane: Lane::Bulk,
            ..B
        };
        assert_eq!(k.open(&sealed, &bulk, 0), Err(SealError::Forged), "lane");
        let sealed_bulk = k.seal(1, &bulk, b"chunk");
        assert_eq!(k.open(&sealed_bulk, &B, 0), Err(SealError::Forged));
        assert_eq!(k.open(&sealed_bulk, &bulk, 0).unwrap().1, b"chunk");
    }

    #[test]
    fn a_frame_reflected_to_its_sender_does_not_open() {
        // The receiver opens with the two challenges swapped relative to how they were sealed:
        // a frame bounced back at its sender presents its own challenge as the peer's.
        let k = key(1);
        let sealed = k.seal(1, &B, b"proof");
        let reflected = Binding {
            challenge: B.sender_challenge,
            sender_challenge: B.challenge,
            ..B
        };
        assert_eq!(k.open(&sealed, &reflected, 0), Err(SealError::Forged));
        let spliced = Binding {
            sender_challenge: [5; 16],
            ..B
        };
        assert_eq!(k.open(&sealed, &spliced, 0), Err(SealError::Forged));
    }

    #[test]
    fn frames_of_older_versions_name_the_device_to_update() {
        let mut old = key(1).seal(1, &B, b"hello");
        old[0] = 2;
        let err = key(1).open(&old, &B, 0).unwrap_err();
        assert_eq!(err, SealError::Outdated(2));
        assert!(err.to_string().contains("update the other device"));
        old[0] = 4;
        assert_eq!(key(1).open(&old, &B, 0), Err(SealError::UnknownVersion(4)));
    }

    #[test]
    fn frame_key_is_pinned_and_never_printed() {
        let k = key(42);
        assert_eq!(format!("{k:?}"), "FrameKey(..)");
        let expected = include_str!("../tests/fixtures/frame_key_42.txt").trim();
        let hex: String = k.key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn oversized_frames_are_refused_before_any_crypto() {
        let huge = vec![SEALED_VERSION; crate::budget::MAX_PACKET + 1];
        assert_eq!(
            key(1).open(&huge, &B, 0),
            Err(SealError::TooLarge(huge.len()))
        );
    }

    proptest! {
        #[test]
        fn garbage_is_never_accepted(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert!(key(1).open(&bytes, &B, 0).is_err());
        }

        #[test]
        fn any_bit_flip_or_truncation_is_refused(pos in 0usize..60, bit in 0u8..8, cut in 0usize..60) {
            let k = key(1);
            let sealed = k.seal(1, &B, b"hello there, this is a packet");
            let mut flipped = sealed.clone();
            let i = pos % flipped.len();
            flipped[i] ^= 1 << bit;
            prop_assert!(k.open(&flipped, &B, 0).is_err());
            let cut = cut % sealed.len();
            prop_assert!(k.open(&sealed[..cut], &B, 0).is_err());
        }
    }
}
