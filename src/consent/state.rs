//! The pure part of the ledger: the current state of one (activity, purpose) for one citizen,
//! derived from their events. No I/O; time comes in as an argument.
//!
//! Rules, in order:
//! - events count in ledger order (the journal's sequence numbers), the last one wins;
//! - a withdrawal counts at once, whatever its time: failing towards "no" is always safe;
//! - a consent dated in the future (an instance whose clock runs ahead) counts only once
//!   `now` reaches it: a consent cannot be honoured before it was given;
//! - a consent given for another version of the notice text is `Stale`: the citizen agreed to
//!   a text that is no longer the one in force, so they are asked again.

use std::sync::Arc;

use time::OffsetDateTime;

/// One event of the ledger, as the state function needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub activity: Arc<str>,
    pub purpose: Arc<str>,
    pub given: bool,
    pub at: OffsetDateTime,
    /// Version of the notice text shown when the event was recorded.
    pub notice_version: Arc<str>,
}

/// Where one (activity, purpose) stands for one citizen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never asked: silence means refusal.
    Never,
    /// Given (event `seq`), for the notice in force.
    Given { seq: i64 },
    /// Withdrawn (event `seq`).
    Withdrawn { seq: i64 },
    /// Given (event `seq`) for another notice version: ask again.
    Stale { seq: i64 },
}

impl State {
    /// Processing on consent may go ahead.
    pub fn allows(self) -> bool {
        matches!(self, Self::Given { .. })
    }
}

/// The state of (`activity`, `purpose`) given `events` (in ledger order), the notice version in
/// force and `now`.
pub fn current(events: &[Event], activity: &str, purpose: &str, notice_version: &str, now: OffsetDateTime) -> State {
    let mine = events.iter().rev().filter(|e| &*e.activity == activity && &*e.purpose == purpose);
    for e in mine {
        if !e.given {
            return State::Withdrawn { seq: e.seq };
        }
        if e.at > now {
            // Not yet: look at what stood before it.
            continue;
        }
        return if &*e.notice_version == notice_version {
            State::Given { seq: e.seq }
        } else {
            State::Stale { seq: e.seq }
        };
    }
    State::Never
}

/// The state of an activity in a sector: from the sector's events, else (never given there)
/// from `earlier`, the v1 (`general`) subject's events, where consents given before the
/// activity had a sector stay (docs/cryptography.md, "Sector pseudonyms").
pub fn current_in_sector(
    events: &[Event],
    earlier: Option<&[Event]>,
    activity: &str,
    purpose: &str,
    notice_version: &str,
    now: OffsetDateTime,
) -> State {
    match (current(events, activity, purpose, notice_version, now), earlier) {
        (State::Never, Some(earlier)) => current(earlier, activity, purpose, notice_version, now),
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, FixedClock};

    fn ev(seq: i64, purpose: &str, given: bool, at: OffsetDateTime, version: &str) -> Event {
        Event { seq, activity: "lettre".into(), purpose: purpose.into(), given, at, notice_version: version.into() }
    }

    #[test]
    fn state_table() {
        let clock = FixedClock::at(time::macros::datetime!(2026-11-28 12:00 UTC));
        let now = clock.now();
        let past = now - time::Duration::minutes(5);
        let future = now + time::Duration::minutes(5);
        let cases: Vec<(&str, Vec<Event>, State)> = vec![
            ("nothing recorded", vec![], State::Never),
            ("given", vec![ev(1, "envoi", true, past, "v1")], State::Given { seq: 1 }),
            (
                "given then withdrawn",
                vec![ev(1, "envoi", true, past, "v1"), ev(2, "envoi", false, past, "v1")],
                State::Withdrawn { seq: 2 },
            ),
            (
                "withdrawn then given again",
                vec![
                    ev(1, "envoi", true, past, "v1"),
                    ev(2, "envoi", false, past, "v1"),
                    ev(3, "envoi", true, past, "v1"),
                ],
                State::Given { seq: 3 },
            ),
            ("other purpose only", vec![ev(1, "autre", true, past, "v1")], State::Never),
            (
                "another purpose's withdrawal does not touch this one",
                vec![ev(1, "envoi", true, past, "v1"), ev(2, "autre", false, past, "v1")],
                State::Given { seq: 1 },
            ),
            ("given for an older notice", vec![ev(1, "envoi", true, past, "v0")], State::Stale { seq: 1 }),
            ("given in the future", vec![ev(1, "envoi", true, future, "v1")], State::Never),
            (
                "future consent after a past one: the past one stands",
                vec![ev(1, "envoi", true, past, "v1"), ev(2, "envoi", true, future, "v1")],
                State::Given { seq: 1 },
            ),
            (
                "a withdrawal dated in the future still counts now",
                vec![ev(1, "envoi", true, past, "v1"), ev(2, "envoi", false, future, "v1")],
                State::Withdrawn { seq: 2 },
            ),
        ];
        for (name, events, expected) in cases {
            assert_eq!(current(&events, "lettre", "envoi", "v1", now), expected, "{name}");
        }
        // Time moves on: the future-dated consent starts to count.
        clock.advance(time::Duration::minutes(10));
        let events = vec![ev(1, "envoi", true, future, "v1")];
        assert_eq!(current(&events, "lettre", "envoi", "v1", clock.now()), State::Given { seq: 1 });
        assert!(State::Given { seq: 1 }.allows());
        assert!(!State::Stale { seq: 1 }.allows() && !State::Never.allows());
    }
}
