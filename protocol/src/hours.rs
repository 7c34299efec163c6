//! A site's business hours as people write them: in the relay's config file (`[site.hours]`),
//! in the admin API's JSON, and in the console's Routing page. One type, so the three never
//! drift; the relay parses and checks it (time zone, ranges) in `relay-server/src/hours.rs`.

use serde::{Deserialize, Serialize};

/// A site's weekly schedule as written: the zone and one `HH:MM-HH:MM[,…]` string per open day.
/// This is both the TOML form and the admin API's JSON form.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HoursSpec {
    /// IANA time zone name, e.g. `Asia/Seoul`: hours are wall-clock times there.
    pub tz: String,
    /// Monday's ranges; absent or empty: closed all day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mon: Option<String>,
    /// Tuesday.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tue: Option<String>,
    /// Wednesday.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wed: Option<String>,
    /// Thursday.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thu: Option<String>,
    /// Friday.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fri: Option<String>,
    /// Saturday.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sat: Option<String>,
    /// Sunday.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sun: Option<String>,
}

impl HoursSpec {
    /// Day `i`'s ranges, Monday = 0; `None` when closed.
    pub fn day(&self, i: usize) -> Option<&str> {
        [
            &self.mon, &self.tue, &self.wed, &self.thu, &self.fri, &self.sat, &self.sun,
        ][i]
            .as_deref()
    }
}
