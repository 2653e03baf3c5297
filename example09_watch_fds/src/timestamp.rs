//! Wall-clock timestamps for the event log, in UTC, without a date crate.
//!
//! The Python's `logging` prints `2015-04-23 08:34:35,104`. The standard
//! library gives seconds since 1970; turning a day count into a calendar
//! date is a few lines of arithmetic (Howard Hinnant's `civil_from_days`).

use std::time::{SystemTime, UNIX_EPOCH};

/// `SystemTime` as `2026-11-24 10:39:19.104Z` (UTC, milliseconds).
pub fn format(time: SystemTime) -> String {
    // A clock set before 1970 is shown as 1970: a log line is no reason to
    // stop a server.
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, second_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Now, formatted.
pub fn now() -> String {
    format(SystemTime::now())
}

/// The proleptic Gregorian date of day `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Count from 0000-03-01, so that the leap day ends each 4-year cycle,
    // and split into 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        format(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01 00:00:00.000Z");
        // The Python article's log line, read as UTC.
        assert_eq!(at(1_429_778_075, 104), "2015-04-23 08:34:35.104Z");
        // A leap day, and the last second of a year.
        assert_eq!(at(951_782_400, 0), "2000-02-29 00:00:00.000Z");
        assert_eq!(at(1_735_689_599, 999), "2024-12-31 23:59:59.999Z");
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // 1970 to past 2100 (not a leap year): the date advances by one day,
        // months and years roll over at the right places.
        let mut previous = civil_from_days(0);
        for days in 1..50_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = y == py && m == pm && d == pd + 1;
            let next_month = y == py && m == pm + 1 && d == 1;
            let next_year = y == py + 1 && m == 1 && d == 1 && pm == 12 && pd == 31;
            assert!(
                next_day || next_month || next_year,
                "{previous:?} -> {y}-{m}-{d}"
            );
            previous = (y, m, d);
        }
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
    }
}
