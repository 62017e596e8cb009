//! The space secret, what is derived from it, and pairing links.
//!
//! A space is the set of one person's devices. Its 32-byte secret never leaves a device except
//! inside a pairing link, whose secret sits in the URL *fragment* so it never reaches any
//! server. From it we derive with HKDF-SHA256 the room id (the only thing the signaling server
//! sees) and, in the encryption layer, the frame key.
//!
//! Link: `<origin>/#pair=<base64url secret>&signal=<percent-encoded ws(s) URL>`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use sha2::Sha256;
use std::fmt;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Why a pairing link was refused. Each message is written for the person holding the link.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PairingError {
    /// No `#pair=` part at all: a link of another page or app.
    #[error("this is not a Ferry pairing link (it has no “#pair=” part)")]
    NotAPairingLink,
    /// The secret is not valid base64url.
    #[error("the pairing link is damaged: its secret is not readable (copy the whole link again)")]
    BadEncoding,
    /// The secret decodes to the wrong number of bytes (usually a truncated link).
    #[error(
        "the pairing link is incomplete: its secret has {0} bytes instead of 32 (copy the whole link again)"
    )]
    WrongLength(usize),
    /// The connection settings in the link are not readable.
    #[error("the pairing link's connection settings are damaged (copy the whole link again)")]
    BadIce,
    /// The signaling address is not a ws:// or wss:// URL.
    #[error(
        "the pairing link names a signaling server that is not a ws:// or wss:// address: {0:?}"
    )]
    BadSignal(String),
}

/// The 32-byte secret shared by all devices of a space. Zeroized on drop; never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SpaceSecret([u8; 32]);

impl fmt::Debug for SpaceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpaceSecret(..)")
    }
}

/// The room id derived from a space secret: what the signaling server sees.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct RoomId(String);

impl RoomId {
    /// The room id as text (32 hex digits), used as the signaling URL path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const SALT: &[u8] = b"ferry/space/v1";

impl SpaceSecret {
    /// A fresh random secret for a new space.
    pub fn random() -> Self {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the platform random number generator is unavailable");
        SpaceSecret(b)
    }

    /// Wraps stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SpaceSecret(bytes)
    }

    /// Reads stored bytes, refusing the wrong length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, PairingError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| PairingError::WrongLength(bytes.len()))?;
        Ok(SpaceSecret(arr))
    }

    /// The raw bytes, for storage on this device only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives `len` bytes for a purpose; distinct labels give independent keys.
    pub fn derive(&self, label: &str, out: &mut [u8]) {
        let hk = Hkdf::<Sha256>::new(Some(SALT), &self.0);
        // Only fails for outputs above 255*32 bytes, which we never ask for.
        hk.expand(label.as_bytes(), out)
            .expect("HKDF output length is within bounds");
    }

    /// The signaling room of this space.
    pub fn room_id(&self) -> RoomId {
        let mut b = [0u8; 16];
        self.derive("room-id", &mut b);
        RoomId(b.iter().map(|x| format!("{x:02x}")).collect())
    }

    /// A non-secret fingerprint for the UI ("is this the space I meant?"): 64 bits as four
    /// groups of four hex digits, `A1B2-C3D4-E5F6-0718`. 24 bits (before issue #15) let
    /// someone make a look-alike space in a few million tries; 64 do not. HKDF output is a
    /// prefix of longer output, so the first six digits are the old fingerprint: a person
    /// comparing with a device not yet updated still sees them match.
    pub fn fingerprint(&self) -> String {
        let mut b = [0u8; 8];
        self.derive("fingerprint", &mut b);
        b.chunks(2)
            .map(|g| format!("{:02X}{:02X}", g[0], g[1]))
            .collect::<Vec<_>>()
            .join("-")
    }
}

/// A parsed pairing link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingLink {
    /// The space secret it carries.
    pub secret: SpaceSecret,
    /// The signaling server the inviting device uses, if it named one.
    pub signal: Option<String>,
    /// The inviting device's own STUN/TURN servers, as JSON (the app validates the shape),
    /// so a device behind CGNAT joins already knowing the relay it needs.
    pub ice: Option<String>,
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl PairingLink {
    /// Formats the link for an app served at `base` (origin + path, e.g. `https://x.org/`).
    pub fn to_url(&self, base: &str) -> zeroize::Zeroizing<String> {
        let base = base.split('#').next().unwrap_or(base);
        let extra = self.signal.as_ref().map_or(0, |s| 8 + 3 * s.len())
            + self.ice.as_ref().map_or(0, |s| 5 + 3 * s.len());
        // Sized up front and encoded in place, so no reallocation leaves a copy of the
        // secret behind in freed memory.
        let mut url = zeroize::Zeroizing::new(String::with_capacity(base.len() + 64 + extra));
        url.push_str(base);
        url.push_str("#pair=");
        URL_SAFE_NO_PAD.encode_string(self.secret.expose(), &mut url);
        if let Some(signal) = &self.signal {
            url.push_str("&signal=");
            url.push_str(&percent_encode(signal));
        }
        if let Some(ice) = &self.ice {
            url.push_str("&ice=");
            url.push_str(&percent_encode(ice));
        }
        url
    }

    /// Parses a whole link or just its fragment (`#pair=...`).
    pub fn parse(text: &str) -> Result<Self, PairingError> {
        let text = text.trim();
        let fragment = text
            .split_once('#')
            .map(|(_, f)| f)
            .ok_or(PairingError::NotAPairingLink)?;
        let mut secret = None;
        let mut signal = None;
        let mut ice = None;
        for part in fragment.split('&') {
            match part.split_once('=') {
                Some(("pair", v)) => secret = Some(v),
                Some(("signal", v)) if !v.is_empty() => {
                    let url = percent_decode(v)
                        .ok_or_else(|| PairingError::BadSignal(v.chars().take(80).collect()))?;
                    if !(url.starts_with("ws://") || url.starts_with("wss://"))
                        || url.len() > 2048
                        || url.chars().any(char::is_whitespace)
                    {
                        return Err(PairingError::BadSignal(url.chars().take(80).collect()));
                    }
                    signal = Some(url);
                }
                Some(("ice", v)) if !v.is_empty() => {
                    let json = percent_decode(v).ok_or(PairingError::BadIce)?;
                    if json.len() > 4096 {
                        return Err(PairingError::BadIce);
                    }
                    ice = Some(json);
                }
                _ => {}
            }
        }
        let secret = secret.ok_or(PairingError::NotAPairingLink)?;
        // The decoded secret is copied into a zeroizing SpaceSecret; wipe this copy too.
        let bytes = zeroize::Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(secret)
                .map_err(|_| PairingError::BadEncoding)?,
        );
        Ok(PairingLink {
            secret: SpaceSecret::from_slice(&bytes)?,
            signal,
            ice,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_has_64_bits_in_readable_groups_and_keeps_the_old_prefix() {
        let s = SpaceSecret::from_bytes([42; 32]);
        let f = s.fingerprint();
        let groups: Vec<&str> = f.split('-').collect();
        assert_eq!(groups.len(), 4, "{f}");
        assert!(groups.iter().all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        }));
        let mut old = [0u8; 3];
        s.derive("fingerprint", &mut old);
        let old: String = old.iter().map(|x| format!("{x:02X}")).collect();
        assert!(f.replace('-', "").starts_with(&old));
        assert_ne!(f, SpaceSecret::from_bytes([43; 32]).fingerprint());
    }

    #[test]
    fn link_round_trips_with_and_without_signal() {
        let link = PairingLink {
            secret: SpaceSecret::random(),
            signal: Some("ws://192.168.1.5:3536".into()),
            ice: Some(
                r#"[{"urls":["turn:t.example:3478"],"username":"u","credential":"p&q"}]"#.into(),
            ),
        };
        let url = link.to_url("http://192.168.1.5:8080/");
        assert!(url.starts_with("http://192.168.1.5:8080/#pair="));
        assert_eq!(PairingLink::parse(&url), Ok(link.clone()));
        let bare = PairingLink {
            signal: None,
            ice: None,
            ..link
        };
        assert_eq!(
            PairingLink::parse(&bare.to_url("https://ferry.example/")),
            Ok(bare)
        );
    }

    #[test]
    fn key_derivation_is_pinned() {
        let s = SpaceSecret::from_bytes([42; 32]);
        assert_eq!(
            s.room_id().as_str(),
            include_str!("../tests/fixtures/room_id_42.txt").trim()
        );
        assert_ne!(SpaceSecret::from_bytes([43; 32]).room_id(), s.room_id());
    }

    #[test]
    fn secrets_never_print() {
        let s = SpaceSecret::from_bytes([7; 32]);
        assert_eq!(format!("{s:?}"), "SpaceSecret(..)");
        let link = PairingLink {
            secret: s,
            signal: None,
            ice: None,
        };
        assert!(!format!("{link:?}").contains("7, 7"));
    }

    #[test]
    fn bad_links_get_specific_errors() {
        let ok = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let short = URL_SAFE_NO_PAD.encode([1u8; 20]);
        let cases = [
            ("https://example.com/page", PairingError::NotAPairingLink),
            (
                "https://example.com/#section",
                PairingError::NotAPairingLink,
            ),
            ("http://x/#pair=***", PairingError::BadEncoding),
            (
                &format!("http://x/#pair={short}"),
                PairingError::WrongLength(20),
            ),
            (
                &format!("http://x/#pair={ok}&signal=http%3A%2F%2Fevil"),
                PairingError::BadSignal("http://evil".into()),
            ),
        ];
        let cases = cases.into_iter().chain([(
            "http://x/#pair=AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE&ice=%ZZ",
            PairingError::BadIce,
        )]);
        for (input, err) in cases {
            assert_eq!(PairingLink::parse(input), Err(err), "{input}");
        }
    }
}
