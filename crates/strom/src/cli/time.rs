//! Date-times for `--to-datetime`: ISO 8601 as Kafka's
//! `kafka-consumer-groups --to-datetime` takes them
//! (`YYYY-MM-DDTHH:mm:SS.sss`, optionally with `Z` or `±HH:MM`), or
//! milliseconds since the epoch.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(s: &str, what: &str, lo: i64, hi: i64) -> Result<i64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad {what} {s:?}"));
    }
    let v: i64 = s.parse().map_err(|_| format!("bad {what} {s:?}"))?;
    if v < lo || v > hi {
        return Err(format!("{what} {v} is out of range {lo}-{hi}"));
    }
    Ok(v)
}

/// Milliseconds since the epoch of `s`. Times without a zone are UTC.
pub fn parse_datetime(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("bad timestamp {s:?}"));
    }
    let fail = |why: String| {
        format!("{why} in {s:?}; expected YYYY-MM-DDTHH:mm:SS[.sss][Z|±HH:MM] or milliseconds since the epoch")
    };
    let (date, rest) = match s.find(['T', ' ']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut dp = date.split('-');
    let (Some(y), Some(m), Some(d), None) = (dp.next(), dp.next(), dp.next(), dp.next()) else {
        return Err(fail("bad date".into()));
    };
    let y = num(y, "year", 1970, 9999).map_err(fail)?;
    let m = num(m, "month", 1, 12).map_err(fail)?;
    let d = num(d, "day", 1, days_in_month(y, m)).map_err(fail)?;
    // Split off the zone: Z, +HH:MM, -HH:MM, +HHMM.
    let (time, offset_min) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = z[1..].replace(':', "");
        if z.len() != 4 && z.len() != 2 {
            return Err(fail(format!("bad zone offset {:?}", &rest[i..])));
        }
        let h = num(&z[..2], "zone hour", 0, 18).map_err(fail)?;
        let mm = if z.len() == 4 {
            num(&z[2..], "zone minute", 0, 59).map_err(fail)?
        } else {
            0
        };
        (t, sign * (h * 60 + mm))
    } else {
        (rest, 0)
    };
    let mut hh = 0;
    let mut mi = 0;
    let mut ss = 0;
    let mut ms = 0;
    if !time.is_empty() {
        let (hms, frac) = match time.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (time, None),
        };
        let mut tp = hms.split(':');
        hh = num(tp.next().unwrap_or(""), "hour", 0, 23).map_err(fail)?;
        mi = num(tp.next().unwrap_or(""), "minute", 0, 59).map_err(fail)?;
        if let Some(sec) = tp.next() {
            ss = num(sec, "second", 0, 59).map_err(fail)?;
        }
        if tp.next().is_some() {
            return Err(fail("bad time".into()));
        }
        if let Some(f) = frac {
            if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail(format!("bad fraction {f:?}")));
            }
            let padded = format!("{f:0<3}");
            ms = num(&padded[..3], "milliseconds", 0, 999).map_err(fail)?;
        }
    }
    let days = days_from_civil(y, m, d);
    let secs = days * 86_400 + hh * 3600 + mi * 60 + ss - offset_min * 60;
    Ok(secs * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000").unwrap(), 0);
        assert_eq!(parse_datetime("1700000000000").unwrap(), 1_700_000_000_000);
        // date -u -d 2023-11-14T22:13:20 +%s → 1700000000
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.5").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(
            parse_datetime("2023-11-14T23:13:20.123+01:00").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_datetime("2023-11-14T21:13:20-0100").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime("2023-11-14T22:13").unwrap(),
            1_699_999_980_000
        );
        assert_eq!(parse_datetime("2024-02-29").unwrap(), 1_709_164_800_000);
        assert!(parse_datetime("2023-02-29").is_err());
        assert!(parse_datetime("2023-13-01").is_err());
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2023-11-14T25:00").is_err());
        assert!(parse_datetime("").is_err());
    }
}
