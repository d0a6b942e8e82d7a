//! The OCPP 1.6 field types that carry constraints JSON alone does not: the case-insensitive
//! bounded strings (OCPP 1.6 §7 "CiString20Type" … "CiString500Type"), `dateTime`
//! (RFC 3339, OCPP-J 1.6 §3.1 "Date-time format"), and the error a payload raises when one
//! of its fields breaks a constraint, classified into the CALLERROR code of OCPP-J 1.6
//! §4.2.3 that the receiver must answer with.
//!
//! The classification works on serde's error text: serde's own messages ("missing field",
//! "unknown field", "invalid type", "unknown variant", "invalid value") have been stable
//! for years, and the custom errors raised here start with a tag naming their code.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::rpc::{ErrorCode, Frame, MessageId};

/// Prefix of a custom serde error that maps to PropertyConstraintViolation.
const PROPERTY_TAG: &str = "property constraint violated: ";
/// Prefix of a custom serde error that maps to TypeConstraintViolation.
const TYPE_TAG: &str = "type constraint violated: ";
/// Prefix of a custom serde error that maps to OccurenceConstraintViolation.
const OCCURENCE_TAG: &str = "occurence constraint violated: ";

/// A payload that does not fit its action's schema, with the CALLERROR code it earns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct PayloadError {
    /// The CALLERROR code the receiver answers with (OCPP-J 1.6 §4.2.3).
    pub code: ErrorCode,
    /// What was wrong, for the CALLERROR's errorDescription.
    pub description: String,
}

impl PayloadError {
    /// An error with the given code and description.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    /// The CALLERROR answering the CALL `id` that carried the bad payload.
    pub fn reply(self, id: MessageId) -> Frame {
        Frame::error(id, self.code, self.description)
    }

    /// Classifies a serde_json error raised while decoding a payload.
    pub fn from_serde(error: &serde_json::Error) -> Self {
        let text = error.to_string();
        let (code, description) = if let Some(rest) = text.strip_prefix(PROPERTY_TAG) {
            (ErrorCode::PropertyConstraintViolation, rest)
        } else if let Some(rest) = text.strip_prefix(TYPE_TAG) {
            (ErrorCode::TypeConstraintViolation, rest)
        } else if let Some(rest) = text.strip_prefix(OCCURENCE_TAG) {
            (ErrorCode::OccurenceConstraintViolation, rest)
        } else if text.starts_with("missing field") {
            // "Payload for Action is incomplete".
            (ErrorCode::ProtocolError, text.as_str())
        } else if text.starts_with("unknown field") {
            // additionalProperties false: the payload does not conform to the PDU.
            (ErrorCode::FormationViolation, text.as_str())
        } else if text.starts_with("invalid type") {
            (ErrorCode::TypeConstraintViolation, text.as_str())
        } else if text.starts_with("unknown variant") || text.starts_with("invalid value") {
            (ErrorCode::PropertyConstraintViolation, text.as_str())
        } else {
            (ErrorCode::FormationViolation, text.as_str())
        };
        Self::new(code, description)
    }
}

/// Decodes a payload into `T`, classifying a failure into its CALLERROR code.
pub fn decode_payload<T: de::DeserializeOwned>(
    payload: &serde_json::Value,
) -> Result<T, PayloadError> {
    T::deserialize(payload).map_err(|e| PayloadError::from_serde(&e))
}

/// A custom serde error that classifies as OccurenceConstraintViolation.
pub(crate) fn occurence_error<E: de::Error>(what: impl fmt::Display) -> E {
    E::custom(format!("{OCCURENCE_TAG}{what}"))
}

/// A string of at most `N` characters (OCPP 1.6 CiString`N`Type), compared without regard
/// to ASCII case by [`CiString::matches`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CiString<const N: usize>(String);

/// CiString20Type: idTag, chargePointVendor, chargePointModel, iccid, imsi.
pub type CiString20 = CiString<20>;
/// CiString25Type: serial numbers and meter type.
pub type CiString25 = CiString<25>;
/// CiString50Type: firmwareVersion, info, vendorErrorCode, messageId, configuration keys.
pub type CiString50 = CiString<50>;
/// CiString255Type: vendorId.
pub type CiString255 = CiString<255>;
/// CiString500Type: configuration values.
pub type CiString500 = CiString<500>;

/// A string longer than its CiString bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("string of {len} characters exceeds maxLength {max}")]
pub struct TooLong {
    /// The string's length in characters.
    pub len: usize,
    /// The bound it broke.
    pub max: usize,
}

impl<const N: usize> CiString<N> {
    /// Accepts `s` if it has at most `N` characters.
    pub fn new(s: impl Into<String>) -> Result<Self, TooLong> {
        let s = s.into();
        let len = s.chars().count();
        if len > N {
            return Err(TooLong { len, max: N });
        }
        Ok(Self(s))
    }

    /// The string as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether two strings are equal ignoring ASCII case, as OCPP compares CiStrings.
    pub fn matches(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl<const N: usize> fmt::Display for CiString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const N: usize> TryFrom<&str> for CiString<N> {
    type Error = TooLong;
    fn try_from(s: &str) -> Result<Self, TooLong> {
        Self::new(s)
    }
}

impl<const N: usize> Serialize for CiString<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de, const N: usize> Deserialize<'de> for CiString<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(s).map_err(|e| de::Error::custom(format!("{PROPERTY_TAG}{e}")))
    }
}

/// An RFC 3339 date-time as OCPP-J 1.6 §3.1 requires, kept as sent, validated on
/// construction, convertible to and from Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DateTime {
    /// The text as received or produced.
    text: String,
    /// The instant it names, in milliseconds since the Unix epoch (UTC).
    unix_millis: i64,
}

/// A string that is not an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 date-time")]
pub struct BadDateTime {
    /// The rejected text.
    pub text: String,
}

impl DateTime {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
    pub fn parse(text: &str) -> Result<Self, BadDateTime> {
        match parse_rfc3339(text) {
            Some(unix_millis) => Ok(Self {
                text: text.to_owned(),
                unix_millis,
            }),
            None => Err(BadDateTime {
                text: text.to_owned(),
            }),
        }
    }

    /// The UTC date-time `unix_millis` milliseconds after the epoch, as
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`. Years outside 0000–9999 are clamped into it.
    pub fn from_unix_millis(unix_millis: i64) -> Self {
        let min = days_from_civil(0, 1, 1) * 86_400_000;
        let max = days_from_civil(10_000, 1, 1) * 86_400_000 - 1;
        let unix_millis = unix_millis.clamp(min, max);
        let days = unix_millis.div_euclid(86_400_000);
        let ms_of_day = unix_millis.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let secs = ms_of_day / 1000;
        let text = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            ms_of_day % 1000
        );
        Self { text, unix_millis }
    }

    /// The text as sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Milliseconds since the Unix epoch (fractions beyond milliseconds truncated).
    pub fn unix_millis(&self) -> i64 {
        self.unix_millis
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for DateTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(|e| de::Error::custom(format!("{TYPE_TAG}{e}")))
    }
}

/// Reads exactly `n` ASCII digits at `at`.
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let field = b.get(at..at + n)?;
    field.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// Parses an RFC 3339 date-time (§5.6 "date-time") into Unix milliseconds.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return None;
        }
        let frac = &text[start..at.min(start + 3)];
        millis = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_minutes = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && b[at + 3] == b':' => {
            let oh = digits(b, at + 1, 2)?;
            let om = digits(b, at + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let minutes = oh * 60 + om;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cistring_bounds_are_characters() {
        assert!(CiString20::new("A".repeat(20)).is_ok());
        assert_eq!(
            CiString20::new("A".repeat(21)),
            Err(TooLong { len: 21, max: 20 })
        );
        // 20 two-byte characters are 20 characters, not 40.
        assert!(CiString20::new("é".repeat(20)).is_ok());
        assert!(CiString20::new("04E91C5A").is_ok_and(|t| t.matches("04e91c5a")));
    }

    #[test]
    fn too_long_cistring_is_a_property_constraint_violation() {
        let err = decode_payload::<CiString20>(&json!("123456789012345678901")).unwrap_err();
        assert_eq!(err.code, ErrorCode::PropertyConstraintViolation);
        assert!(err.description.contains("maxLength 20"), "{err}");
    }

    #[test]
    fn date_times_parse_to_unix_millis() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2013-02-01T20:53:32.486Z", 1_359_752_012_486),
            ("2013-02-01T21:53:32.486+01:00", 1_359_752_012_486),
            ("2013-02-01T15:23:32.4861-05:30", 1_359_752_012_486),
            ("2024-02-29T12:00:00.5z", 1_709_208_000_500),
            ("1969-12-31T23:59:59.999Z", -1),
        ];
        for (text, millis) in cases {
            let t = DateTime::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.unix_millis(), millis, "{text}");
            assert_eq!(t.as_str(), text);
        }
    }

    #[test]
    fn malformed_date_times_are_rejected() {
        for text in [
            "",
            "2013-02-01",
            "2013-02-01T20:53:32",      // no offset
            "2013-02-01 20:53:32Z",     // space separator
            "2023-02-29T00:00:00Z",     // not a leap year
            "2013-13-01T00:00:00Z",     // month 13
            "2013-02-01T24:00:00Z",     // hour 24
            "2013-02-01T20:53:32.Z",    // empty fraction
            "2013-02-01T20:53:32+0100", // offset without colon
            "2013-02-01T20:53:32Zjunk", // trailing text
            "２０１3-02-01T20:53:32Z",  // non-ASCII digits
        ] {
            assert!(DateTime::parse(text).is_err(), "{text:?} accepted");
        }
        let err = decode_payload::<DateTime>(&json!("yesterday")).unwrap_err();
        assert_eq!(err.code, ErrorCode::TypeConstraintViolation);
    }

    #[test]
    fn date_times_format_from_unix_millis() {
        assert_eq!(
            DateTime::from_unix_millis(1_359_752_012_486).as_str(),
            "2013-02-01T20:53:32.486Z"
        );
        assert_eq!(
            DateTime::from_unix_millis(-1).as_str(),
            "1969-12-31T23:59:59.999Z"
        );
        for millis in [0, 951_782_400_000, 4_107_542_399_999, -2_208_988_800_001] {
            let t = DateTime::from_unix_millis(millis);
            assert_eq!(DateTime::parse(t.as_str()), Ok(t.clone()));
            assert_eq!(t.unix_millis(), millis);
        }
    }
}
