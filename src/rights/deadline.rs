//! The legal deadline of a rights request (GDPR Art. 12(3)), as calendar arithmetic on dates.
//!
//! - Due one calendar month after receipt, counted as the EDPB counts it (guidelines 01/2022,
//!   after Regulation 1182/71): the same day of the next month, or that month's last day when it
//!   has no such day (31 January → 28 or 29 February).
//! - The clock is paused while a reasonable doubt about the requester's identity is being
//!   cleared (Art. 12(6)); each paused day moves the due date by one day.
//! - It may be extended by at most two further months, only with a recorded reason and only if
//!   the requester was told before the first month ran out.
//!
//! Dates are calendar dates in the controller's local time: the caller converts the instant of
//! receipt before building a [`Deadline`]. Nothing here reads a clock: "today" is an argument.

use time::{Date, Duration, Month};

/// At most this many months may be added to the first month (Art. 12(3)).
pub const MAX_EXTENSION_MONTHS: u8 = 2;

/// Why a change to a deadline was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadlineError {
    NoReason,
    TooLong,
    FirstMonthOver,
    NoticeTooLate,
    AlreadyPaused,
    NotPaused,
    BackInTime,
}

impl DeadlineError {
    /// The one wording of each refusal (the API's problem detail too).
    pub fn message(&self) -> &'static str {
        match self {
            Self::NoReason => "an extension needs a reason",
            Self::TooLong => "an extension adds one or two months, at most two in all",
            Self::FirstMonthOver => "the first month has ended: the deadline can no longer be extended",
            Self::NoticeTooLate => "the requester must be told of the extension before the first month ends",
            Self::AlreadyPaused => "the clock is already paused",
            Self::NotPaused => "the clock is not paused",
            Self::BackInTime => "a pause cannot end before it started",
        }
    }
}

impl std::fmt::Display for DeadlineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for DeadlineError {}

/// An extension decided by the controller, with its reason and the date the requester was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub months: u8,
    pub reason: String,
    pub notice_sent_on: Date,
}

/// The deadline of one request: receipt, pauses and extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    received_on: Date,
    paused_days: i64,
    paused_since: Option<Date>,
    extensions: Vec<Extension>,
}

impl Deadline {
    pub fn new(received_on: Date) -> Self {
        Self { received_on, paused_days: 0, paused_since: None, extensions: Vec::new() }
    }

    /// Rebuilds a deadline from what was stored.
    pub fn restore(
        received_on: Date,
        paused_days: i64,
        paused_since: Option<Date>,
        extensions: Vec<Extension>,
    ) -> Self {
        Self { received_on, paused_days: paused_days.max(0), paused_since, extensions }
    }

    pub fn received_on(&self) -> Date {
        self.received_on
    }

    pub fn paused_days(&self) -> i64 {
        self.paused_days
    }

    pub fn paused_since(&self) -> Option<Date> {
        self.paused_since
    }

    pub fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    pub fn extended_months(&self) -> u8 {
        self.extensions.iter().map(|e| e.months).sum()
    }

    /// The end of the first month, moved by the days paused so far (as of `today`).
    pub fn first_due_on(&self, today: Date) -> Date {
        shift_days(add_months(self.received_on, 1), self.days_paused_as_of(today))
    }

    /// The date by which the answer is due, as of `today` (a running pause keeps moving it).
    pub fn due_on(&self, today: Date) -> Date {
        let months = 1 + u32::from(self.extended_months());
        shift_days(add_months(self.received_on, months), self.days_paused_as_of(today))
    }

    /// Late: `today` is past the due date and the clock is running.
    pub fn is_overdue(&self, today: Date) -> bool {
        self.paused_since.is_none() && today > self.due_on(today)
    }

    /// Whole days left before the due date (negative once late).
    pub fn days_left(&self, today: Date) -> i64 {
        (self.due_on(today) - today).whole_days()
    }

    /// Pauses the clock while the requester's identity is being checked (Art. 12(6)).
    pub fn pause(&mut self, on: Date) -> Result<(), DeadlineError> {
        if self.paused_since.is_some() {
            return Err(DeadlineError::AlreadyPaused);
        }
        self.paused_since = Some(on);
        Ok(())
    }

    /// Restarts the clock: the days paused are added to the deadline.
    pub fn resume(&mut self, on: Date) -> Result<(), DeadlineError> {
        let since = self.paused_since.ok_or(DeadlineError::NotPaused)?;
        if on < since {
            return Err(DeadlineError::BackInTime);
        }
        self.paused_days += (on - since).whole_days();
        self.paused_since = None;
        Ok(())
    }

    /// Extends by `months` (Art. 12(3)): refused without a reason, beyond two months in all,
    /// once the first month is over, or when the requester was told after it.
    pub fn extend(&mut self, extension: Extension, today: Date) -> Result<(), DeadlineError> {
        if extension.reason.trim().is_empty() {
            return Err(DeadlineError::NoReason);
        }
        let total = self.extended_months().saturating_add(extension.months);
        if extension.months == 0 || total > MAX_EXTENSION_MONTHS {
            return Err(DeadlineError::TooLong);
        }
        let first_due = self.first_due_on(today);
        if today > first_due {
            return Err(DeadlineError::FirstMonthOver);
        }
        if extension.notice_sent_on > first_due {
            return Err(DeadlineError::NoticeTooLate);
        }
        self.extensions.push(extension);
        Ok(())
    }

    fn days_paused_as_of(&self, today: Date) -> i64 {
        let running = self.paused_since.map_or(0, |since| (today - since).whole_days().max(0));
        self.paused_days + running
    }
}

/// The same day `months` later, or that month's last day when it has no such day.
pub fn add_months(date: Date, months: u32) -> Date {
    let index = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + i32::try_from(months).unwrap_or(0);
    let year = index.div_euclid(12);
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).unwrap_or(1)).unwrap_or(Month::January);
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).unwrap_or(date)
}

fn shift_days(date: Date, days: i64) -> Date {
    date.checked_add(Duration::days(days)).unwrap_or(date)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn extension(months: u8, notice_sent_on: Date) -> Extension {
        Extension { months, reason: "Demande complexe : cinq services concernés".into(), notice_sent_on }
    }

    #[test]
    fn one_calendar_month_with_month_ends_and_leap_years() {
        let table = [
            (date!(2026 - 01 - 15), date!(2026 - 02 - 15)),
            (date!(2026 - 01 - 31), date!(2026 - 02 - 28)),
            (date!(2028 - 01 - 31), date!(2028 - 02 - 29)),
            (date!(2028 - 01 - 29), date!(2028 - 02 - 29)),
            (date!(2026 - 01 - 29), date!(2026 - 02 - 28)),
            (date!(2026 - 03 - 31), date!(2026 - 04 - 30)),
            (date!(2026 - 02 - 28), date!(2026 - 03 - 28)),
            (date!(2028 - 02 - 29), date!(2028 - 03 - 29)),
            (date!(2026 - 12 - 31), date!(2027 - 01 - 31)),
            (date!(2026 - 12 - 03), date!(2027 - 01 - 03)),
            (date!(2026 - 08 - 31), date!(2026 - 09 - 30)),
        ];
        for (received, due) in table {
            let d = Deadline::new(received);
            assert_eq!(d.due_on(received), due, "received {received}");
        }
    }

    #[test]
    fn extensions_count_from_receipt_not_from_the_first_due_date() {
        // 31 Jan + 3 months is 30 April, not 28 Feb + 2 months (28 April).
        let mut d = Deadline::new(date!(2026 - 01 - 31));
        d.extend(extension(2, date!(2026 - 02 - 10)), date!(2026 - 02 - 10)).unwrap();
        assert_eq!(d.due_on(date!(2026 - 02 - 10)), date!(2026 - 04 - 30));
        let mut leap = Deadline::new(date!(2027 - 11 - 30));
        leap.extend(extension(2, date!(2027 - 12 - 01)), date!(2027 - 12 - 01)).unwrap();
        assert_eq!(leap.due_on(date!(2027 - 12 - 01)), date!(2028 - 02 - 29));
    }

    #[test]
    fn extension_refused_after_the_first_month_or_with_a_late_notice() {
        let received = date!(2026 - 01 - 31);
        let mut d = Deadline::new(received);
        let after = date!(2026 - 03 - 01);
        assert_eq!(d.extend(extension(1, date!(2026 - 02 - 20)), after), Err(DeadlineError::FirstMonthOver));
        assert_eq!(
            d.extend(extension(1, date!(2026 - 03 - 01)), date!(2026 - 02 - 27)),
            Err(DeadlineError::NoticeTooLate)
        );
        // On the due date itself the first month has not ended yet.
        assert_eq!(d.extend(extension(1, date!(2026 - 02 - 28)), date!(2026 - 02 - 28)), Ok(()));
        assert_eq!(d.due_on(date!(2026 - 02 - 28)), date!(2026 - 03 - 31));
    }

    #[test]
    fn extension_needs_a_reason_and_stops_at_two_months() {
        let today = date!(2026 - 05 - 04);
        let mut d = Deadline::new(date!(2026 - 05 - 02));
        let blank = Extension { months: 1, reason: "  ".into(), notice_sent_on: today };
        assert_eq!(d.extend(blank, today), Err(DeadlineError::NoReason));
        assert_eq!(d.extend(extension(3, today), today), Err(DeadlineError::TooLong));
        assert_eq!(d.extend(extension(0, today), today), Err(DeadlineError::TooLong));
        d.extend(extension(1, today), today).unwrap();
        d.extend(extension(1, today), today).unwrap();
        assert_eq!(d.extend(extension(1, today), today), Err(DeadlineError::TooLong));
        assert_eq!(d.due_on(today), date!(2026 - 08 - 02));
    }

    #[test]
    fn a_pause_for_an_identity_doubt_moves_the_due_date() {
        let mut d = Deadline::new(date!(2026 - 03 - 10));
        d.pause(date!(2026 - 03 - 12)).unwrap();
        // While paused, the due date keeps moving and the request is never late.
        assert_eq!(d.due_on(date!(2026 - 03 - 20)), date!(2026 - 04 - 18));
        assert!(!d.is_overdue(date!(2026 - 06 - 01)));
        assert_eq!(d.pause(date!(2026 - 03 - 13)), Err(DeadlineError::AlreadyPaused));
        assert_eq!(d.resume(date!(2026 - 03 - 11)), Err(DeadlineError::BackInTime));
        d.resume(date!(2026 - 03 - 22)).unwrap();
        assert_eq!(d.paused_days(), 10);
        assert_eq!(d.due_on(date!(2026 - 04 - 01)), date!(2026 - 04 - 20));
        assert_eq!(d.resume(date!(2026 - 03 - 23)), Err(DeadlineError::NotPaused));
    }

    #[test]
    fn overdue_the_day_after_the_due_date() {
        let d = Deadline::new(date!(2026 - 01 - 31));
        assert!(!d.is_overdue(date!(2026 - 02 - 28)));
        assert_eq!(d.days_left(date!(2026 - 02 - 28)), 0);
        assert!(d.is_overdue(date!(2026 - 03 - 01)));
        assert_eq!(d.days_left(date!(2026 - 03 - 02)), -2);
    }
}
