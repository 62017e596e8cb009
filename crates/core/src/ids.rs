//! Identifiers: random, fixed-size, printed as lowercase hex so they sort and compare as text.

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Why a textual id was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    /// The text was not 32 lowercase hex digits.
    #[error("an id must be 32 hex digits, got {0:?}")]
    Malformed(String),
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    // The OS/browser RNG failing is not recoverable and never caused by input.
    getrandom::fill(&mut b).expect("the platform random number generator is unavailable");
    b
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex16(s: &str) -> Result<[u8; 16], IdError> {
    let bad = || IdError::Malformed(s.chars().take(64).collect());
    if s.len() != 32
        || !s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

macro_rules! hex_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(random16())
            }
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
            /// Builds an id from raw bytes (tests and derived ids).
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }
            /// The first 4 hex digits: enough to tell a person's few devices apart.
            pub fn short(&self) -> String {
                to_hex(&self.0[..2])
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&to_hex(&self.0))
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                from_hex16(s).map(Self)
            }
        }
        /// As its 32 hex digits (so it can key a JSON object, as in the local state).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// One browser profile on one device. Authors items; names the device in the UI.
    DeviceId
);
hex_id!(
    /// One item of the history (text, note, file). Random, so devices never collide.
    ItemId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = DeviceId::random();
        assert_eq!(id.to_string().parse::<DeviceId>(), Ok(id));
        assert_ne!(ItemId::random(), ItemId::random());
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "xyz", &"A".repeat(32), &"0".repeat(31), &"é".repeat(16)] {
            assert!(bad.parse::<ItemId>().is_err(), "{bad:?} accepted");
        }
    }
}
