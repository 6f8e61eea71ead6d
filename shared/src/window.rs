//! Weekly time windows in a device's local time: `Mon-Fri 01:00-05:00`, `Sat,Sun 00:00-24:00`,
//! `daily 22:00-06:00` (an end at or before the start runs past midnight, into the next day).
//! Update windows (when a device may switch) and rate schedules (when a download cap applies)
//! are lists of them. Pure: the caller turns its clock and time zone into a [`WeekMinute`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Minutes in a day.
const DAY: u32 = 24 * 60;
/// Minutes in a week.
const WEEK: u32 = 7 * DAY;

/// Day names, Monday first.
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A moment of the week in local time: minutes since Monday 00:00.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WeekMinute(u32);

impl WeekMinute {
    /// `weekday` 0 = Monday … 6 = Sunday, at `hour`:`minute`; `None` out of range.
    pub fn new(weekday: u8, hour: u8, minute: u8) -> Option<Self> {
        (weekday < 7 && hour < 24 && minute < 60).then(|| {
            WeekMinute(u32::from(weekday) * DAY + u32::from(hour) * 60 + u32::from(minute))
        })
    }

    /// Minutes since Monday 00:00.
    pub fn minutes(self) -> u32 {
        self.0
    }
}

/// One weekly window: on the days it names, from `start` for `length` minutes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// The days it starts on, as a bit per day (Monday = bit 0).
    days: u8,
    /// Start, in minutes after midnight.
    start: u32,
    /// Length in minutes (1 to a whole day).
    length: u32,
}

/// A window's text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "window {text:?}: {reason} (write e.g. `Mon-Fri 01:00-05:00`, `Sat,Sun 00:00-24:00` or `daily 22:00-06:00`)"
)]
pub struct WindowError {
    text: String,
    reason: &'static str,
}

impl Window {
    /// Whether `at` falls inside it.
    pub fn contains(&self, at: WeekMinute) -> bool {
        (0..7u32).any(|day| {
            self.days & (1 << day) != 0 && {
                let start = day * DAY + self.start;
                // Minutes since this day's start, across the week's end.
                (at.0 + WEEK - start) % WEEK < self.length
            }
        })
    }

    /// Minutes from `at` until it next opens (0 when open).
    pub fn opens_in(&self, at: WeekMinute) -> u32 {
        if self.contains(at) {
            return 0;
        }
        (0..7u32)
            .filter(|day| self.days & (1 << day) != 0)
            .map(|day| (day * DAY + self.start + WEEK - at.0) % WEEK)
            .min()
            .unwrap_or(WEEK)
    }
}

/// Whether `at` falls inside any of `windows`; no windows means always.
pub fn open(windows: &[Window], at: WeekMinute) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(at))
}

/// Minutes from `at` until one of `windows` opens (0 when one is open or there are none).
pub fn opens_in(windows: &[Window], at: WeekMinute) -> u32 {
    windows.iter().map(|w| w.opens_in(at)).min().unwrap_or(0)
}

fn parse_time(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(DAY),
        (h, m) if h < 24 && m < 60 => Some(h * 60 + m),
        _ => None,
    }
}

fn parse_days(text: &str) -> Option<u8> {
    if text.eq_ignore_ascii_case("daily") {
        return Some(0x7f);
    }
    let day = |name: &str| DAYS.iter().position(|d| d.eq_ignore_ascii_case(name));
    let mut days = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    days |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << day(part)?,
        }
    }
    Some(days)
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Self, WindowError> {
        let error = |reason| WindowError {
            text: text.to_owned(),
            reason,
        };
        let mut words = text.split_whitespace();
        let (Some(days), Some(times), None) = (words.next(), words.next(), words.next()) else {
            return Err(error("expected DAYS HH:MM-HH:MM"));
        };
        let days =
            parse_days(days).ok_or_else(|| error("days are Mon…Sun, ranges, lists or `daily`"))?;
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| error("expected HH:MM-HH:MM"))?;
        let start = parse_time(start)
            .filter(|s| *s < DAY)
            .ok_or_else(|| error("the start is not a time of day"))?;
        let end = parse_time(end).ok_or_else(|| error("the end is not a time of day"))?;
        if end == start {
            // A whole day is written 00:00-24:00; the same time twice is more likely a slip.
            return Err(error("the window starts and ends at the same time"));
        }
        let length = if end > start {
            end - start
        } else {
            end + DAY - start
        };
        Ok(Window {
            days,
            start,
            length,
        })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == 0x7f {
            f.write_str("daily")?;
        } else {
            let names: Vec<&str> = (0..7)
                .filter(|d| self.days & (1 << d) != 0)
                .map(|d| DAYS[d])
                .collect();
            f.write_str(&names.join(","))?;
        }
        let end = (self.start + self.length) % DAY;
        let end = if end == 0 && self.start + self.length == DAY {
            DAY
        } else {
            end
        };
        write!(
            f,
            " {:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            end / 60,
            end % 60
        )
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u8, h: u8, m: u8) -> WeekMinute {
        WeekMinute::new(day, h, m).unwrap()
    }

    fn w(text: &str) -> Window {
        text.parse().unwrap()
    }

    #[test]
    fn weekday_ranges_and_nights_across_midnight_and_the_weeks_end() {
        let office = w("Mon-Fri 01:00-05:00");
        assert!(office.contains(at(0, 1, 0)));
        assert!(office.contains(at(4, 4, 59)));
        assert!(!office.contains(at(4, 5, 0)), "the end is outside");
        assert!(!office.contains(at(5, 2, 0)), "Saturday");
        let night = w("daily 22:00-06:00");
        assert!(night.contains(at(2, 23, 0)) && night.contains(at(3, 5, 59)));
        assert!(!night.contains(at(3, 12, 0)));
        let sunday_night = w("Sun 23:00-02:00");
        assert!(
            sunday_night.contains(at(0, 1, 30)),
            "into Monday, across the week's end"
        );
        assert!(!sunday_night.contains(at(1, 1, 30)));
        let weekend = w("Sat,Sun 00:00-24:00");
        assert!(weekend.contains(at(6, 23, 59)) && !weekend.contains(at(0, 0, 0)));
        let wraps = w("Fri-Mon 12:00-13:00");
        assert!(wraps.contains(at(6, 12, 30)) && wraps.contains(at(0, 12, 30)));
        assert!(!wraps.contains(at(2, 12, 30)));
    }

    #[test]
    fn when_the_next_window_opens() {
        let windows = [w("Mon-Fri 01:00-05:00"), w("Sat 10:00-11:00")];
        assert_eq!(opens_in(&windows, at(0, 0, 30)), 30);
        assert_eq!(opens_in(&windows, at(0, 2, 0)), 0);
        // Friday 06:00 → Saturday 10:00.
        assert_eq!(opens_in(&windows, at(4, 6, 0)), 28 * 60);
        // Sunday noon → Monday 01:00, across the week's end.
        assert_eq!(opens_in(&windows, at(6, 12, 0)), 13 * 60);
        assert!(open(&[], at(3, 3, 3)), "no windows: always");
        assert_eq!(opens_in(&[], at(3, 3, 3)), 0);
    }

    #[test]
    fn one_spelling_and_bad_text_refused() {
        assert_eq!(
            w("mon-fri 1:00-05:00").to_string(),
            "Mon,Tue,Wed,Thu,Fri 01:00-05:00"
        );
        assert_eq!(w("daily 00:00-24:00").to_string(), "daily 00:00-24:00");
        assert_eq!(w("Sun 23:00-02:00").to_string(), "Sun 23:00-02:00");
        assert_eq!(
            w(&w("Sat,Sun 00:00-24:00").to_string()),
            w("Sat,Sun 00:00-24:00")
        );
        for bad in [
            "",
            "Mon",
            "Mon 01:00",
            "Mon 25:00-26:00",
            "Funday 01:00-02:00",
            "Mon 01:00-02:00 x",
            "Mon 24:00-01:00",
            "Mon 1:5-2:00",
            "Mon 01:00-01:60",
            "Mon 01:00-01:00",
        ] {
            assert!(bad.parse::<Window>().is_err(), "{bad:?}");
        }
    }
}
