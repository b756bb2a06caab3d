//! Injected time and randomness. Deadlines, expiry and retention are time logic: they read
//! the time from a `Clock` so tests can drive it (`FixedClock`). Clippy bans direct reads.

use std::fmt;
use std::sync::{Arc, Mutex};

use ring::rand::SecureRandom;
use time::OffsetDateTime;

/// A source of the current UTC time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<Mutex<OffsetDateTime>>);

impl FixedClock {
    pub fn at(t: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(t)))
    }

    pub fn advance(&self, by: time::Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0.lock().map_or(OffsetDateTime::UNIX_EPOCH, |t| *t)
    }
}

/// A source of unpredictable bytes.
pub trait Random: Send + Sync + fmt::Debug {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError>;
}

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// The operating system's CSPRNG, through ring.
#[derive(Debug)]
pub struct SystemRandom(ring::rand::SystemRandom);

impl SystemRandom {
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl Random for SystemRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        self.0.fill(dest).map_err(|_| RandomError)
    }
}

/// Lowercase hex of `n` random bytes.
pub fn random_hex<const N: usize>(rng: &dyn Random) -> Result<String, RandomError> {
    let mut buf = [0u8; N];
    rng.fill(&mut buf)?;
    Ok(hex(&buf))
}

/// Lowercase hex (pseudonyms and ids are derived on every signed-in request: no formatting
/// machinery per byte).
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Lowercase hex of `bytes` into `out`, two digits per byte (as far as `out` reaches).
pub fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        for (slot, nibble) in pair.iter_mut().zip([b >> 4, b & 0x0f]) {
            *slot = DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0');
        }
    }
}

/// Appends the lowercase hex of `bytes` to `out`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    fn digit(n: u8) -> char {
        char::from(if n < 10 { b'0' + n } else { b'a' + (n - 10) })
    }
    for b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 0x0f));
    }
}

/// The instant `t` in French local time (Europe/Paris). Summer time has followed one rule in
/// the EU since 1996 (Directive 2000/84/EC): from the last Sunday of March, 01:00 UTC, to the
/// last Sunday of October, 01:00 UTC, UTC+2; otherwise UTC+1. The rule is computed rather than
/// read from a time-zone database, so the binary needs none.
pub fn in_paris(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = t.year();
    let summer = last_sunday_1am_utc(year, time::Month::March)..last_sunday_1am_utc(year, time::Month::October);
    let hours = if summer.contains(&t) { 2 } else { 1 };
    t.to_offset(time::UtcOffset::from_hms(hours, 0, 0).unwrap_or(time::UtcOffset::UTC))
}

/// The calendar date of `t` in French local time (deadlines are counted in local days).
pub fn paris_date(t: OffsetDateTime) -> time::Date {
    in_paris(t).date()
}

fn last_sunday_1am_utc(year: i32, month: time::Month) -> OffsetDateTime {
    let last = time::Date::from_calendar_date(year, month, month.length(year)).unwrap_or(time::Date::MIN);
    let back = i64::from(last.weekday().number_days_from_sunday());
    let sunday = last.checked_sub(time::Duration::days(back)).unwrap_or(last);
    sunday.with_hms(1, 0, 0).map_or(OffsetDateTime::UNIX_EPOCH, |d| d.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paris_time_follows_the_eu_summer_time_rule() {
        use time::macros::datetime;
        // 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC.
        let table = [
            (datetime!(2026-01-31 23:30 UTC), datetime!(2026-02-01 00:30 +1)),
            (datetime!(2026-03-29 00:59 UTC), datetime!(2026-03-29 01:59 +1)),
            (datetime!(2026-03-29 01:00 UTC), datetime!(2026-03-29 03:00 +2)),
            (datetime!(2026-07-14 22:30 UTC), datetime!(2026-07-15 00:30 +2)),
            (datetime!(2026-10-25 00:59 UTC), datetime!(2026-10-25 02:59 +2)),
            (datetime!(2026-10-25 01:00 UTC), datetime!(2026-10-25 02:00 +1)),
            (datetime!(2028-03-26 01:00 UTC), datetime!(2028-03-26 03:00 +2)),
        ];
        for (utc, local) in table {
            let got = in_paris(utc);
            assert_eq!((got, got.offset()), (local, local.offset()), "{utc}");
        }
        assert_eq!(paris_date(datetime!(2026-01-31 23:30 UTC)), time::macros::date!(2026 - 02 - 01));
    }

    #[test]
    fn fixed_clock_moves_only_when_advanced() {
        let c = FixedClock::at(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(c.now(), OffsetDateTime::UNIX_EPOCH);
        c.advance(time::Duration::days(31));
        assert_eq!(c.now(), OffsetDateTime::UNIX_EPOCH + time::Duration::days(31));
    }

    #[test]
    fn hex_is_lowercase_and_twice_as_long() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(random_hex::<16>(&SystemRandom::new()).unwrap().len(), 32);
        let bytes: Vec<u8> = (0..=255).collect();
        let mut out = vec![0u8; 512];
        hex_into(&mut out, &bytes);
        assert_eq!(String::from_utf8(out).unwrap(), hex(&bytes));
    }
}
