//! Business hours: a site's weekly schedule in its own time zone, and whether people can answer
//! now (inside hours **and** at least one agent online) — what the widget calls *available*.
//!
//! The schedule is written as in the config file (`[site.hours] tz = "Asia/Seoul"`,
//! `mon = "09:00-18:00"`, `sat = "10:00-12:00,13:00-15:00"`, a missing day is closed) and parsed
//! once, so a bad zone or range fails at start (or in the admin API), never per visitor. Time
//! zone rules come from jiff with its bundled tz database, so daylight-saving changes are right
//! even on hosts without `/usr/share/zoneinfo`.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

/// Day names in the config, Monday first (jiff's `to_monday_zero_offset` order).
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

pub use protocol::hours::HoursSpec;

/// A parsed, valid schedule. Deserializes from (and serializes to) [`HoursSpec`], so an invalid
/// one never exists.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(try_from = "HoursSpec", into = "HoursSpec")]
pub struct Hours {
    /// What it was parsed from (kept to write it back unchanged).
    spec: HoursSpec,
    /// The zone the wall-clock ranges are in.
    tz: TimeZone,
    /// Open ranges per weekday (Monday first), as minutes since local midnight, `start < end`,
    /// `end <= 1440` (`24:00`). Sorted and not overlapping.
    days: [Vec<(u16, u16)>; 7],
}

impl PartialEq for Hours {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl TryFrom<HoursSpec> for Hours {
    type Error = String;

    fn try_from(spec: HoursSpec) -> Result<Self, String> {
        let tz = TimeZone::get(&spec.tz).map_err(|_| format!("unknown time zone {:?}", spec.tz))?;
        let mut days: [Vec<(u16, u16)>; 7] = Default::default();
        for (i, slot) in days.iter_mut().enumerate() {
            if let Some(text) = spec.day(i) {
                *slot = parse_ranges(text).map_err(|e| format!("{}: {e}", DAYS[i]))?;
            }
        }
        Ok(Self { spec, tz, days })
    }
}

impl From<Hours> for HoursSpec {
    fn from(h: Hours) -> Self {
        h.spec
    }
}

/// `"09:00-12:00, 13:00-18:00"` → minute ranges. Overnight ranges are refused (write
/// `22:00-24:00` on one day and `00:00-02:00` on the next).
fn parse_ranges(text: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.eq_ignore_ascii_case("closed") {
            continue;
        }
        let (a, b) = part
            .split_once('-')
            .ok_or_else(|| format!("{part:?} is not HH:MM-HH:MM"))?;
        let (start, end) = (minutes(a.trim())?, minutes(b.trim())?);
        if start >= end {
            return Err(format!(
                "{part:?} ends before it starts (split overnight hours across two days)"
            ));
        }
        out.push((start, end));
    }
    out.sort_unstable();
    if out.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(format!("{text:?} has overlapping ranges"));
    }
    Ok(out)
}

fn minutes(hhmm: &str) -> Result<u16, String> {
    let bad = || format!("{hhmm:?} is not a time HH:MM");
    let (h, m) = hhmm.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Whether a site's hours are open at an instant, and when they next open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenState {
    /// Inside a range now.
    pub open: bool,
    /// When closed: the next opening (Unix ms), if any within the coming week.
    pub opens_at: Option<i64>,
}

impl Hours {
    /// The zone name, as configured.
    pub fn tz_name(&self) -> &str {
        &self.spec.tz
    }

    /// Open or closed at `now`, and the next opening when closed.
    pub fn state_at(&self, now: Timestamp) -> OpenState {
        let local = now.to_zoned_datetime(self.tz.clone());
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let today = weekday_index(local.weekday());
        if self.days[today]
            .iter()
            .any(|&(s, e)| s <= minute && minute < e)
        {
            return OpenState {
                open: true,
                opens_at: None,
            };
        }
        OpenState {
            open: false,
            opens_at: self.next_opening(local.date(), now),
        }
    }

    /// The first range start after `now`, looking at today and the next seven days. Local times
    /// skipped by a DST gap resolve forward (jiff's `compatible` rule).
    fn next_opening(&self, today: Date, now: Timestamp) -> Option<i64> {
        for offset in 0..8i64 {
            let date = today.checked_add(offset.days()).ok()?;
            let ranges = &self.days[weekday_index(date.weekday())];
            for &(start, _) in ranges {
                let at = date
                    .at((start / 60) as i8, (start % 60) as i8, 0, 0)
                    .to_zoned_datetime(self.tz.clone())
                    .ok()?
                    .timestamp();
                if at > now {
                    return Some(at.as_millisecond());
                }
            }
        }
        None
    }
}

fn weekday_index(w: Weekday) -> usize {
    w.to_monday_zero_offset() as usize
}

/// Whether people can answer a site's visitors now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Availability {
    /// Inside business hours (or the site has none) **and** at least one agent is online.
    pub available: bool,
    /// When outside hours: the next opening (Unix ms).
    pub opens_at: Option<i64>,
}

/// Availability from a site's hours (none: always open) and the number of agents online.
pub fn availability(hours: Option<&Hours>, agents_online: usize, now: Timestamp) -> Availability {
    let state = hours.map(|h| h.state_at(now)).unwrap_or(OpenState {
        open: true,
        opens_at: None,
    });
    Availability {
        available: state.open && agents_online > 0,
        opens_at: state.opens_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(tz: &str, mon: &str) -> Hours {
        Hours::try_from(HoursSpec {
            tz: tz.into(),
            mon: Some(mon.into()),
            tue: Some(mon.into()),
            ..Default::default()
        })
        .expect("valid")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn open_inside_the_local_range_only() {
        let seoul = hours("Asia/Seoul", "09:00-18:00");
        // Monday 2026-11-23 09:30 in Seoul is 00:30 UTC.
        assert!(seoul.state_at(at("2026-11-23T00:30:00Z")).open);
        // 08:59 Seoul.
        assert!(!seoul.state_at(at("2026-11-22T23:59:00Z")).open);
        // 18:00 Seoul is closed (end exclusive).
        let closed = seoul.state_at(at("2026-11-23T09:00:00Z"));
        assert!(!closed.open);
        // Next opening: Tuesday 09:00 Seoul = Tuesday 00:00 UTC.
        assert_eq!(
            closed.opens_at,
            Some(at("2026-11-24T00:00:00Z").as_millisecond())
        );
    }

    #[test]
    fn same_instant_differs_by_zone() {
        let now = at("2026-11-23T15:00:00Z"); // Mon 15:00 UTC
        assert!(!hours("Asia/Seoul", "09:00-18:00").state_at(now).open); // Tue 00:00 there
        assert!(hours("Europe/London", "09:00-18:00").state_at(now).open);
        assert!(hours("America/New_York", "09:00-18:00").state_at(now).open); // 10:00
        assert!(
            !hours("America/Los_Angeles", "09:00-18:00")
                .state_at(now)
                .open
        ); // 07:00
    }

    #[test]
    fn dst_shifts_the_utc_opening() {
        let ny = Hours::try_from(HoursSpec {
            tz: "America/New_York".into(),
            mon: Some("09:00-17:00".into()),
            ..Default::default()
        })
        .expect("valid");
        // Summer (EDT, UTC-4) and winter (EST, UTC-5).
        assert!(ny.state_at(at("2026-07-06T13:30:00Z")).open);
        assert!(!ny.state_at(at("2026-12-07T13:30:00Z")).open);
        assert!(ny.state_at(at("2026-12-07T14:30:00Z")).open);
        // Sunday before: the next opening is Monday 09:00 local.
        assert_eq!(
            ny.state_at(at("2026-12-06T12:00:00Z")).opens_at,
            Some(at("2026-12-07T14:00:00Z").as_millisecond())
        );
    }

    #[test]
    fn closed_week_has_no_opening_and_bad_specs_fail() {
        let never = Hours::try_from(HoursSpec {
            tz: "UTC".into(),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(
            never.state_at(Timestamp::now()),
            OpenState {
                open: false,
                opens_at: None
            }
        );
        for (tz, mon) in [
            ("Mars/Olympus", "09:00-10:00"),
            ("UTC", "18:00-09:00"),
            ("UTC", "9-10"),
            ("UTC", "09:00-24:30"),
            ("UTC", "09:00-12:00,11:00-13:00"),
        ] {
            let spec = HoursSpec {
                tz: tz.into(),
                mon: Some(mon.into()),
                ..Default::default()
            };
            assert!(Hours::try_from(spec).is_err(), "{tz} {mon}");
        }
        let split = hours("UTC", "09:00-12:00, 13:00-24:00");
        assert!(split.state_at(at("2026-11-23T23:59:00Z")).open);
        assert!(!split.state_at(at("2026-11-23T12:30:00Z")).open);
    }

    #[test]
    fn available_needs_hours_and_an_agent() {
        let h = hours("UTC", "00:00-24:00");
        let monday = at("2026-11-23T10:00:00Z");
        assert!(availability(Some(&h), 1, monday).available);
        assert!(!availability(Some(&h), 0, monday).available);
        assert!(availability(None, 2, monday).available);
        assert!(!availability(None, 0, monday).available);
        let sunday = at("2026-11-22T10:00:00Z");
        let off = availability(Some(&h), 3, sunday);
        assert!(!off.available);
        assert_eq!(
            off.opens_at,
            Some(at("2026-11-23T00:00:00Z").as_millisecond())
        );
    }
}
