//! Hybrid logical clocks: order items sensibly even when a device's wall clock is days off.
//!
//! A timestamp is `(wall milliseconds, counter)`. A device never issues a timestamp lower than
//! one it has already seen, so an item written after reading another always sorts after it,
//! while items still carry roughly the real time for display.

use serde::{Deserialize, Serialize};

/// One hybrid-logical-clock timestamp. Packs into an `i64` for storage in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (approximately real time).
    pub wall_ms: u64,
    /// Tie-breaker for events within one millisecond or behind a clock jump.
    pub counter: u16,
}

impl Hlc {
    /// Packs as `wall_ms << 16 | counter`; order-preserving and fits an `i64` until year 10889.
    pub fn pack(self) -> i64 {
        let packed = (self.wall_ms << 16) | u64::from(self.counter);
        i64::try_from(packed).unwrap_or(i64::MAX)
    }

    /// Inverse of [`Hlc::pack`]; negative values (never written by Ferry) clamp to zero.
    pub fn unpack(v: i64) -> Self {
        let v = u64::try_from(v).unwrap_or(0);
        Hlc {
            wall_ms: v >> 16,
            counter: (v & 0xffff) as u16,
        }
    }
}

/// The per-device clock state.
#[derive(Debug, Default, Clone)]
pub struct Clock {
    last: Option<Hlc>,
}

impl Clock {
    /// A timestamp for a local event at physical time `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let next = match self.last {
            Some(last) if last.wall_ms >= now_ms => {
                if last.counter == u16::MAX {
                    Hlc {
                        wall_ms: last.wall_ms + 1,
                        counter: 0,
                    }
                } else {
                    Hlc {
                        wall_ms: last.wall_ms,
                        counter: last.counter + 1,
                    }
                }
            }
            _ => Hlc {
                wall_ms: now_ms,
                counter: 0,
            },
        };
        self.last = Some(next);
        next
    }

    /// The latest timestamp issued or seen.
    pub fn latest(&self) -> Option<Hlc> {
        self.last
    }

    /// Takes a timestamp seen from another device into account.
    pub fn observe(&mut self, seen: Hlc) {
        if self.last.is_none_or(|last| seen > last) {
            self.last = Some(seen);
        }
    }
}

/// The civil date `(year, month, day)` of a day counted from 1970-01-01 (Howard Hinnant's
/// algorithm): what times are shown and stamped with, with no time-zone database.
pub fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_clock_still_orders_after_what_it_has_seen() {
        let mut fast = Clock::default();
        let mut slow = Clock::default();
        let seen = fast.tick(10_000_000);
        slow.observe(seen);
        let reply = slow.tick(5); // wall clock years behind
        assert!(reply > seen);
        assert_eq!(reply.wall_ms, seen.wall_ms);
    }

    #[test]
    fn ticks_are_strictly_increasing_and_pack_preserves_order() {
        let mut c = Clock::default();
        let mut prev = c.tick(100);
        for now in [100, 100, 99, 150, 150, 10] {
            let t = c.tick(now);
            assert!(t > prev && t.pack() > prev.pack());
            assert_eq!(Hlc::unpack(t.pack()), t);
            prev = t;
        }
    }
}
