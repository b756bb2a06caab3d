//! The planner, pure: one record's clocks and phase, its category's rule and today give the
//! one action a run takes on it, if any. Months are calendar months (the 31st plus one month
//! is the last day of the next month), as in `rights::deadline`.

use time::{Date, Duration};

use crate::policy::model::{Retention, RetentionEnd, RetentionStart};
use crate::policy::notice::{Period, Unit};

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// In the active base: the services use it.
    Active,
    /// In intermediate archive: only the roles the policy names may reveal it, with a reason.
    Intermediate,
    /// Public archives waiting for the archivist's decision (elimination list).
    Review,
    /// Destroyed or anonymised.
    Ended,
    /// Kept for good (the archivist refused its elimination).
    Kept,
}

impl Phase {
    pub const ALL: [Phase; 5] = [Self::Active, Self::Intermediate, Self::Review, Self::Ended, Self::Kept];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Intermediate => "intermediate",
            Self::Review => "review",
            Self::Ended => "ended",
            Self::Kept => "kept",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether agents other than the archive roles see the placeholder.
    pub fn is_archived(self) -> bool {
        matches!(self, Self::Intermediate | Self::Review | Self::Kept)
    }
}

/// What a run does to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Active → intermediate archive (the application is told the record is archived).
    ToIntermediate,
    /// Tell the citizen their data will be deleted on this date.
    Notice { deletion_on: Date },
    /// Forget the category (crypto-erasure) and tell the application: erasure, reason retention.
    Destroy,
    /// Tell the application to anonymise; the gateway drops the pseudonym's link to the citizen.
    Anonymise,
    /// Collect the record for an elimination list: the archivist decides.
    ArchiveReview,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToIntermediate => "intermediate",
            Self::Notice { .. } => "notice",
            Self::Destroy => "destroy",
            Self::Anonymise => "anonymise",
            Self::ArchiveReview => "archive_review",
        }
    }
}

/// A category's retention rule, durations read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub active: Period,
    pub from: RetentionStart,
    pub intermediate: Option<Period>,
    pub then: RetentionEnd,
    pub notice_before: Option<Period>,
}

impl Rule {
    /// `None` when a duration does not read (the policy check refuses such a set).
    pub fn of(r: &Retention) -> Option<Self> {
        let opt = |v: &Option<String>| v.as_deref().map(Period::parse).transpose().ok();
        Some(Self {
            active: Period::parse(&r.active).ok()?,
            from: r.from,
            intermediate: opt(&r.intermediate)?,
            then: r.then,
            notice_before: opt(&r.notice_before)?,
        })
    }
}

/// What may start a record's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clocks {
    /// First seen by the gateway (collection).
    pub collected_on: Option<Date>,
    /// The citizen's last request on the activity's routes.
    pub last_activity_on: Option<Date>,
    /// The event the application reported (case closed, removal from the roll…).
    pub event_on: Option<Date>,
    /// Consent to the activity withdrawn.
    pub withdrawn_on: Option<Date>,
}

/// One record as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub phase: Phase,
    pub clocks: Clocks,
    /// The deletion date already announced to the citizen, if any.
    pub noticed_for: Option<Date>,
}

/// `date` moved by `n` periods (negative: back).
pub fn shift(date: Date, period: Period, sign: i32) -> Date {
    let n = i64::from(period.count) * i64::from(sign);
    match period.unit {
        Unit::Day => date.checked_add(Duration::days(n)).unwrap_or(date),
        Unit::Month => shift_months(date, n),
        Unit::Year => shift_months(date, n * 12),
    }
}

fn shift_months(date: Date, months: i64) -> Date {
    let index = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + months;
    let (Ok(year), Ok(month)) = (i32::try_from(index.div_euclid(12)), u8::try_from(index.rem_euclid(12) + 1)) else {
        return date;
    };
    let Ok(month) = time::Month::try_from(month) else { return date };
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).unwrap_or(date)
}

/// When the clock started: the rule's own start, or the withdrawal of consent if earlier;
/// `None` while the event it waits for has not happened.
pub fn started_on(rule: &Rule, c: &Clocks) -> Option<Date> {
    let own = match rule.from {
        RetentionStart::Collection => c.collected_on,
        RetentionStart::LastActivity => c.last_activity_on.max(c.collected_on),
        RetentionStart::CaseClosed | RetentionStart::Event => c.event_on,
    };
    match (own, c.withdrawn_on) {
        (Some(o), Some(w)) => Some(o.min(w)),
        (o, w) => o.or(w),
    }
}

/// (end of the active phase, end of life), once the clock has started.
pub fn ends(rule: &Rule, c: &Clocks) -> Option<(Date, Date)> {
    let active_end = shift(started_on(rule, c)?, rule.active, 1);
    let final_on = rule.intermediate.map_or(active_end, |p| shift(active_end, p, 1));
    Some((active_end, final_on))
}

/// Whether `record` is past its end of life on `today` and still under way (active or in
/// intermediate archive): the overdue count, whatever keeps it (a hold, a failed action, the
/// notice before deletion still running). Records waiting for the archivist's visa are not
/// overdue: they wait on the elimination list, counted there.
pub fn past_end(rule: &Rule, record: &Record, today: Date) -> bool {
    matches!(record.phase, Phase::Active | Phase::Intermediate)
        && ends(rule, &record.clocks).is_some_and(|(_, final_on)| today >= final_on)
}

/// The one action due on `record` today, if any.
pub fn plan(rule: &Rule, record: &Record, today: Date) -> Option<Action> {
    if !matches!(record.phase, Phase::Active | Phase::Intermediate) {
        return None;
    }
    let (active_end, final_on) = ends(rule, &record.clocks)?;
    let notice = rule.notice_before.filter(|_| rule.then != RetentionEnd::ArchiveReview);
    if today >= final_on {
        if let Some(notice) = notice {
            match record.noticed_for {
                // Never destroy without the notice the policy promises: the date moves.
                None => return Some(Action::Notice { deletion_on: final_on.max(shift(today, notice, 1)) }),
                Some(announced) if today < announced => return None,
                Some(_) => {}
            }
        }
        return Some(match rule.then {
            RetentionEnd::Destroy => Action::Destroy,
            RetentionEnd::Anonymise => Action::Anonymise,
            RetentionEnd::ArchiveReview => Action::ArchiveReview,
        });
    }
    if record.phase == Phase::Active && rule.intermediate.is_some() && today >= active_end {
        return Some(Action::ToIntermediate);
    }
    match notice {
        Some(n) if record.noticed_for.is_none() && today >= shift(final_on, n, -1) => {
            Some(Action::Notice { deletion_on: final_on })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn rule(active: &str, from: RetentionStart, intermediate: Option<&str>, then: RetentionEnd) -> Rule {
        Rule {
            active: Period::parse(active).unwrap(),
            from,
            intermediate: intermediate.map(|i| Period::parse(i).unwrap()),
            then,
            notice_before: None,
        }
    }

    fn record(phase: Phase, collected: Date) -> Record {
        Record { phase, clocks: Clocks { collected_on: Some(collected), ..Clocks::default() }, noticed_for: None }
    }

    #[test]
    fn months_and_years_are_calendar_ones() {
        let m = |n| Period { count: n, unit: Unit::Month };
        let cases = [
            (date!(2026 - 01 - 31), m(1), 1, date!(2026 - 02 - 28)),
            (date!(2028 - 01 - 31), m(1), 1, date!(2028 - 02 - 29)),
            (date!(2026 - 11 - 15), m(3), 1, date!(2027 - 02 - 15)),
            (date!(2026 - 03 - 31), m(1), -1, date!(2026 - 02 - 28)),
            (date!(2024 - 02 - 29), Period { count: 1, unit: Unit::Year }, 1, date!(2025 - 02 - 28)),
            (date!(2026 - 12 - 01), Period { count: 30, unit: Unit::Day }, -1, date!(2026 - 11 - 01)),
        ];
        for (from, p, sign, expected) in cases {
            assert_eq!(shift(from, p, sign), expected, "{from} {p:?} {sign}");
        }
    }

    #[test]
    fn each_phase_moves_on_its_day_and_not_before() {
        use RetentionEnd::*;
        use RetentionStart::*;
        let collected = date!(2023 - 01 - 15);
        let archive = rule("1 year", Collection, Some("2 years"), Destroy);
        let cases: Vec<(&str, Rule, Phase, Date, Option<Action>)> = vec![
            ("active, day before", archive, Phase::Active, date!(2024 - 01 - 14), None),
            ("active, on the day", archive, Phase::Active, date!(2024 - 01 - 15), Some(Action::ToIntermediate)),
            ("archived, before its end", archive, Phase::Intermediate, date!(2026 - 01 - 14), None),
            ("archived, at its end", archive, Phase::Intermediate, date!(2026 - 01 - 15), Some(Action::Destroy)),
            (
                "active, long overdue: straight to the end",
                archive,
                Phase::Active,
                date!(2030 - 01 - 01),
                Some(Action::Destroy),
            ),
            (
                "no archive: the end at once",
                rule("6 months", Collection, None, Anonymise),
                Phase::Active,
                date!(2023 - 07 - 15),
                Some(Action::Anonymise),
            ),
            (
                "public archives go to review",
                rule("3 years", Collection, None, ArchiveReview),
                Phase::Active,
                date!(2026 - 01 - 15),
                Some(Action::ArchiveReview),
            ),
            ("ended records rest", archive, Phase::Ended, date!(2040 - 01 - 01), None),
            ("records under review rest", archive, Phase::Review, date!(2040 - 01 - 01), None),
            (
                "an event that has not happened starts nothing",
                rule("1 day", Event, None, Destroy),
                Phase::Active,
                date!(2040 - 01 - 01),
                None,
            ),
        ];
        for (name, rule, phase, today, expected) in cases {
            assert_eq!(plan(&rule, &record(phase, collected), today), expected, "{name}");
        }
    }

    #[test]
    fn each_start_counts_from_its_own_date() {
        use RetentionStart::*;
        let clocks = Clocks {
            collected_on: Some(date!(2020 - 01 - 01)),
            last_activity_on: Some(date!(2022 - 06 - 30)),
            event_on: Some(date!(2023 - 09 - 01)),
            withdrawn_on: None,
        };
        let r = |from| rule("1 year", from, None, RetentionEnd::Destroy);
        assert_eq!(started_on(&r(Collection), &clocks), Some(date!(2020 - 01 - 01)));
        assert_eq!(started_on(&r(LastActivity), &clocks), Some(date!(2022 - 06 - 30)));
        assert_eq!(started_on(&r(Event), &clocks), Some(date!(2023 - 09 - 01)));
        assert_eq!(started_on(&r(CaseClosed), &clocks), Some(date!(2023 - 09 - 01)));
        let withdrawn = Clocks { withdrawn_on: Some(date!(2021 - 03 - 01)), event_on: None, ..clocks };
        assert_eq!(started_on(&r(Event), &withdrawn), Some(date!(2021 - 03 - 01)), "a withdrawal starts the clock");
        assert_eq!(started_on(&r(LastActivity), &withdrawn), Some(date!(2021 - 03 - 01)), "or brings it forward");
    }

    #[test]
    fn the_notice_comes_first_and_the_deletion_waits_for_its_date() {
        let mut r = rule("1 year", RetentionStart::Collection, None, RetentionEnd::Destroy);
        r.notice_before = Some(Period::parse("30 days").unwrap());
        let mut rec = record(Phase::Active, date!(2025 - 01 - 01));
        assert_eq!(plan(&r, &rec, date!(2025 - 12 - 01)), None, "31 days before");
        assert_eq!(
            plan(&r, &rec, date!(2025 - 12 - 02)),
            Some(Action::Notice { deletion_on: date!(2026 - 01 - 01) }),
            "30 days before"
        );
        // A run that missed the notice window announces a later date rather than deleting.
        assert_eq!(plan(&r, &rec, date!(2026 - 03 - 01)), Some(Action::Notice { deletion_on: date!(2026 - 03 - 31) }));
        rec.noticed_for = Some(date!(2026 - 03 - 31));
        assert_eq!(plan(&r, &rec, date!(2026 - 03 - 30)), None);
        assert_eq!(plan(&r, &rec, date!(2026 - 03 - 31)), Some(Action::Destroy));
        r.then = RetentionEnd::ArchiveReview;
        rec.noticed_for = None;
        assert_eq!(plan(&r, &rec, date!(2026 - 03 - 01)), Some(Action::ArchiveReview), "no notice for archives");
    }

    #[test]
    fn a_record_waiting_on_its_notice_past_its_end_is_overdue() {
        let mut r = rule("1 year", RetentionStart::Collection, None, RetentionEnd::Destroy);
        r.notice_before = Some(Period::parse("30 days").unwrap());
        let mut rec = record(Phase::Active, date!(2025 - 01 - 01));
        assert!(!past_end(&r, &rec, date!(2025 - 12 - 31)), "the day before its end");
        assert!(past_end(&r, &rec, date!(2026 - 01 - 01)), "on its end, the notice not sent");
        rec.noticed_for = Some(date!(2026 - 03 - 31));
        assert_eq!(plan(&r, &rec, date!(2026 - 03 - 01)), None, "waiting for the announced date");
        assert!(past_end(&r, &rec, date!(2026 - 03 - 01)), "overdue all the same");
        rec.phase = Phase::Review;
        assert!(!past_end(&r, &rec, date!(2026 - 03 - 01)), "the archivist's list counts it");
        rec.phase = Phase::Ended;
        assert!(!past_end(&r, &rec, date!(2040 - 01 - 01)));
    }
}
