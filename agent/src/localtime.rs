//! The device's local time, as update windows and rate schedules read it: its time zone from
//! `TZ` or `/etc/localtime` (jiff), UTC when neither says.

use ferry_shared::window::WeekMinute;

/// Now, as a moment of the local week.
pub fn week_minute_now() -> WeekMinute {
    let now = jiff::Zoned::now();
    let weekday = now.weekday().to_monday_zero_offset();
    // In range by construction (jiff's weekday, hour and minute); Monday 00:00 otherwise.
    WeekMinute::new(
        u8::try_from(weekday).unwrap_or(0),
        u8::try_from(now.hour()).unwrap_or(0),
        u8::try_from(now.minute()).unwrap_or(0),
    )
    .unwrap_or_else(|| WeekMinute::new(0, 0, 0).unwrap_or_else(|| unreachable!()))
}
