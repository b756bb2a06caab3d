//! The figures of the DPO's console and of the supervision view, computed from what the
//! services hand out (requests, ledger rows, journal entries). Pure: the pages gather the
//! inputs, these functions count, and the tests check them against seeded data.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use time::{Date, Month, OffsetDateTime};

use crate::audit::{AuditEvent, Channel, Operation};
use crate::clock::paris_date;
use crate::rights::request::{Right, Status};
use crate::rights::service::RightsRequest;
use crate::store::ConsentRow;

/// Below this, a supervision count is not shown: no one can be singled out from it.
pub const SUPPRESS_UNDER: u64 = 5;

/// A month in Paris time, `2026-11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: i32,
    pub month: Month,
}

impl YearMonth {
    pub fn of(d: Date) -> Self {
        Self { year: d.year(), month: d.month() }
    }

    pub fn of_time(t: OffsetDateTime) -> Self {
        Self::of(paris_date(t))
    }

    pub fn previous(self) -> Self {
        match self.month {
            Month::January => Self { year: self.year - 1, month: Month::December },
            m => Self { year: self.year, month: m.previous() },
        }
    }

    /// The first day of the month.
    pub fn first_day(self) -> Date {
        Date::from_calendar_date(self.year, self.month, 1).unwrap_or(Date::MIN)
    }

    /// `n` months ending with this one, oldest first.
    pub fn last(self, n: usize) -> Vec<Self> {
        let mut out = vec![self];
        for _ in 1..n {
            let before = out.last().copied().unwrap_or(self).previous();
            out.push(before);
        }
        out.reverse();
        out
    }

    /// `2026-11`, as the JSON and the exports write it.
    pub fn key(self) -> String {
        format!("{}-{:02}", self.year, u8::from(self.month))
    }

    /// `nov. 2026`, short for chart axes and table headers.
    pub fn short_french(self) -> String {
        const SHORT: [&str; 12] =
            ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."];
        let m = SHORT.get(usize::from(u8::from(self.month)) - 1).copied().unwrap_or_default();
        format!("{m} {}", self.year)
    }
}

impl Serialize for YearMonth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.key())
    }
}

/// Open requests of one right, by status, with those overdue and those due within a week.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    pub received: u64,
    pub in_progress: u64,
    pub waiting_on_applications: u64,
    pub overdue: u64,
    pub due_this_week: u64,
}

impl QueueCounts {
    pub fn open(&self) -> u64 {
        self.received + self.in_progress + self.waiting_on_applications
    }
}

/// Due within the next 7 days (today included) and not overdue.
pub fn due_this_week(r: &RightsRequest, today: Date) -> bool {
    let due = r.due_on(today);
    !r.is_overdue(today) && due >= today && (due - today).whole_days() < 7
}

/// The open requests counted per right (every right listed, in the order of [`Right::ALL`]).
pub fn queue_counts(open: &[RightsRequest], today: Date) -> Vec<(Right, QueueCounts)> {
    Right::ALL
        .into_iter()
        .map(|right| {
            let mut c = QueueCounts::default();
            for r in open.iter().filter(|r| r.right == right && !r.status.is_final()) {
                match r.status {
                    Status::Received => c.received += 1,
                    Status::InProgress => c.in_progress += 1,
                    _ => c.waiting_on_applications += 1,
                }
                if r.is_overdue(today) {
                    c.overdue += 1;
                } else if due_this_week(r, today) {
                    c.due_this_week += 1;
                }
            }
            (right, c)
        })
        .collect()
}

/// Days from receipt to answer, of one right's answered requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerTimes {
    pub answered: u64,
    pub median_days: Option<f64>,
    pub p90_days: Option<f64>,
}

/// Calendar days (Paris) between a request's receipt and its answer, for answered requests
/// (completed, partly completed or refused; a cancelled request was never answered).
pub fn days_to_answer(r: &RightsRequest, answered_at: OffsetDateTime) -> Option<i64> {
    let answered = matches!(r.status, Status::Completed | Status::PartlyCompleted | Status::Refused);
    answered.then(|| (paris_date(answered_at) - r.deadline.received_on()).whole_days())
}

/// The median: the middle value, or the mean of the two middle ones.
pub fn median(sorted: &[i64]) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let hi = sorted.get(n / 2).copied()?;
    if n % 2 == 1 {
        return Some(hi as f64);
    }
    let lo = sorted.get(n / 2 - 1).copied()?;
    Some((lo + hi) as f64 / 2.0)
}

/// The `p`-th percentile by the nearest-rank method: the smallest value with at least `p`
/// per cent of the values at or below it (always one of the values).
pub fn percentile(sorted: &[i64], p: u32) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (usize::try_from(p).unwrap_or(100) * n).div_ceil(100).max(1);
    sorted.get(rank - 1).map(|v| *v as f64)
}

fn times_of(mut days: Vec<i64>) -> AnswerTimes {
    days.sort_unstable();
    AnswerTimes { answered: days.len() as u64, median_days: median(&days), p90_days: percentile(&days, 90) }
}

/// Median and 90th percentile of the days to answer, per right (every right listed).
pub fn answer_times(requests: &[(RightsRequest, OffsetDateTime)]) -> Vec<(Right, AnswerTimes)> {
    Right::ALL
        .into_iter()
        .map(|right| {
            let days = requests.iter().filter(|(r, _)| r.right == right).filter_map(|(r, at)| days_to_answer(r, *at));
            (right, times_of(days.collect()))
        })
        .collect()
}

/// Consents given and withdrawn in one month for one purpose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConsentMonth {
    pub given: u64,
    pub withdrawn: u64,
}

impl ConsentMonth {
    /// Share of the month's events that gave consent, in per cent (`None` without events).
    pub fn rate(&self) -> Option<f64> {
        let all = self.given + self.withdrawn;
        (all > 0).then(|| (self.given as f64) * 100.0 / (all as f64))
    }
}

/// Per (activity, purpose), consents given and withdrawn in each of `months`.
pub fn consent_series(
    rows: &[ConsentRow],
    months: &[YearMonth],
) -> BTreeMap<(String, String), Vec<(YearMonth, ConsentMonth)>> {
    let mut out: BTreeMap<(String, String), Vec<(YearMonth, ConsentMonth)>> = BTreeMap::new();
    for row in rows {
        let Some(at) = crate::audit::event::from_micros(row.at_us) else { continue };
        let ym = YearMonth::of_time(at);
        let series = out
            .entry((row.activity.clone(), row.purpose.clone()))
            .or_insert_with(|| months.iter().map(|m| (*m, ConsentMonth::default())).collect());
        if let Some((_, c)) = series.iter_mut().find(|(m, _)| *m == ym) {
            if row.given != 0 {
                c.given += 1;
            } else {
                c.withdrawn += 1;
            }
        }
    }
    out
}

/// Reveals counted per (activity, role), from the journal's reveal entries.
pub fn reveals_per_activity_role(events: &[AuditEvent]) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for e in events.iter().filter(|e| matches!(e.operation, Operation::Reveal { .. })) {
        let activity = e.activity.as_ref().map_or_else(|| "—".to_owned(), |a| a.to_string());
        *out.entry((activity, e.role.to_string())).or_insert(0) += 1;
    }
    out
}

/// A count as supervision shows it: the number, or nothing below [`SUPPRESS_UNDER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Count(u64),
    Suppressed,
}

impl Shown {
    pub fn of(n: u64) -> Self {
        if n < SUPPRESS_UNDER { Self::Suppressed } else { Self::Count(n) }
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Suppressed => f.write_str("< 5"),
        }
    }
}

impl Serialize for Shown {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => s.serialize_u64(*n),
            Self::Suppressed => s.serialize_str("< 5"),
        }
    }
}

/// A figure derived from several people (a median, a rate): shown only when it rests on at
/// least [`SUPPRESS_UNDER`] of them.
pub fn shown_value(value: Option<f64>, from: u64) -> Option<f64> {
    value.filter(|_| from >= SUPPRESS_UNDER).map(|v| (v * 10.0).round() / 10.0)
}

/// One service (processing activity) in one month, as supervision shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceMonth {
    pub activity: String,
    pub month: YearMonth,
    /// Rights requests received, by channel.
    pub requests_online: Shown,
    pub requests_counter: Shown,
    pub requests_phone: Shown,
    pub requests_post: Shown,
    pub requests_email: Shown,
    /// Median days to answer the requests answered this month (`None` under the threshold).
    pub median_answer_days: Option<f64>,
    pub consents_given: Shown,
    pub consents_withdrawn: Shown,
    /// Per cent of the month's consent events that gave consent (`None` under the threshold).
    pub consent_rate: Option<f64>,
    /// Requests received this month and still open past their due date today.
    pub overdue: Shown,
}

impl ServiceMonth {
    /// The median for a table: `—` when not shown.
    pub fn median_text(&self) -> String {
        decimal_text(self.median_answer_days, "")
    }

    pub fn rate_text(&self) -> String {
        decimal_text(self.consent_rate, " %")
    }
}

/// `12,5` with its unit, or `—`.
pub fn decimal_text(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}{unit}").replace('.', ","))
}

/// Raw counts before suppression.
#[derive(Debug, Default)]
struct Raw {
    channels: BTreeMap<&'static str, u64>,
    answer_days: Vec<i64>,
    consent: ConsentMonth,
    overdue: u64,
}

/// Every (activity, month) of `months` with its supervision figures; requests filed for no
/// particular activity count under `"—"`.
pub fn service_months(
    requests: &[(RightsRequest, OffsetDateTime)],
    consents: &[ConsentRow],
    months: &[YearMonth],
    activities: &[String],
    today: Date,
) -> Vec<ServiceMonth> {
    let mut raw: BTreeMap<(String, YearMonth), Raw> = BTreeMap::new();
    let key = |a: Option<&String>| a.cloned().unwrap_or_else(|| "—".to_owned());
    for (r, at) in requests {
        let received = YearMonth::of(r.deadline.received_on());
        let cell = raw.entry((key(r.activity.as_ref()), received)).or_default();
        *cell.channels.entry(r.channel.as_str()).or_insert(0) += 1;
        if r.is_overdue(today) {
            cell.overdue += 1;
        }
        if let Some(days) = days_to_answer(r, *at) {
            raw.entry((key(r.activity.as_ref()), YearMonth::of_time(*at))).or_default().answer_days.push(days);
        }
    }
    for c in consents {
        let Some(at) = crate::audit::event::from_micros(c.at_us) else { continue };
        let cell = raw.entry((c.activity.clone(), YearMonth::of_time(at))).or_default();
        if c.given != 0 {
            cell.consent.given += 1;
        } else {
            cell.consent.withdrawn += 1;
        }
    }
    let mut names: Vec<String> = activities.to_vec();
    for (a, _) in raw.keys() {
        if !names.contains(a) {
            names.push(a.clone());
        }
    }
    let mut out = Vec::new();
    for activity in names {
        for month in months {
            let empty = Raw::default();
            let cell = raw.get(&(activity.clone(), *month)).unwrap_or(&empty);
            let channel = |c: Channel| Shown::of(cell.channels.get(c.as_str()).copied().unwrap_or(0));
            let mut days = cell.answer_days.clone();
            days.sort_unstable();
            let events = cell.consent.given + cell.consent.withdrawn;
            out.push(ServiceMonth {
                activity: activity.clone(),
                month: *month,
                requests_online: channel(Channel::Online),
                requests_counter: channel(Channel::Counter),
                requests_phone: channel(Channel::Phone),
                requests_post: channel(Channel::Post),
                requests_email: channel(Channel::Email),
                median_answer_days: shown_value(median(&days), days.len() as u64),
                consents_given: Shown::of(cell.consent.given),
                consents_withdrawn: Shown::of(cell.consent.withdrawn),
                consent_rate: shown_value(cell.consent.rate(), events),
                overdue: Shown::of(cell.overdue),
            });
        }
    }
    out
}

/// Sign-ins per month (citizens and agents together), suppressed under the threshold.
pub fn sign_ins_per_month(sign_ins: &[OffsetDateTime], months: &[YearMonth]) -> Vec<(YearMonth, Shown)> {
    months
        .iter()
        .map(|m| (*m, Shown::of(sign_ins.iter().filter(|t| YearMonth::of_time(**t) == *m).count() as u64)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles_by_nearest_rank() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[4]), Some(4.0));
        assert_eq!(median(&[2, 4, 9, 30]), Some(6.5));
        assert_eq!(median(&[1, 2, 3, 4, 100]), Some(3.0));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 90), Some(9.0));
        assert_eq!(percentile(&ten, 100), Some(10.0));
        assert_eq!(percentile(&[7], 90), Some(7.0));
        let eleven: Vec<i64> = (1..=11).collect();
        assert_eq!(percentile(&eleven, 90), Some(10.0), "rank ceil(9.9) = 10");
    }

    #[test]
    fn counts_under_five_are_suppressed() {
        for n in 0..5 {
            assert_eq!(Shown::of(n), Shown::Suppressed);
            assert_eq!(Shown::of(n).to_string(), "< 5");
            assert_eq!(serde_json::to_value(Shown::of(n)).unwrap(), serde_json::json!("< 5"));
        }
        assert_eq!(Shown::of(5).to_string(), "5");
        assert_eq!(serde_json::to_value(Shown::of(12)).unwrap(), serde_json::json!(12));
        assert_eq!(shown_value(Some(3.0), 4), None);
        assert_eq!(shown_value(Some(3.04), 5), Some(3.0));
    }

    #[test]
    fn months_run_back_across_the_year() {
        let nov = YearMonth { year: 2026, month: Month::February };
        let keys: Vec<String> = nov.last(4).into_iter().map(YearMonth::key).collect();
        assert_eq!(keys, ["2025-11", "2025-12", "2026-01", "2026-02"]);
        assert_eq!(nov.short_french(), "févr. 2026");
    }
}
