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

/// Milliseconds of an ISO-8601 duration as Java's `Duration.parse` (and so
/// `kafka-consumer-groups.sh --by-duration`) reads it:
/// `[-]PnDTnHnMn[.n]S`, each number optionally signed, letters in either
/// case, at least one part, and a `T` only before time parts.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let fail = || format!("bad duration {s:?}; expected PnDTnHnMnS, e.g. P1DT2H30M or PT15M");
    let upper = s.trim().to_ascii_uppercase();
    let (negate, rest) = match upper.as_bytes().first() {
        Some(b'-') => (true, &upper[1..]),
        Some(b'+') => (false, &upper[1..]),
        _ => (false, upper.as_str()),
    };
    let rest = rest.strip_prefix('P').ok_or_else(fail)?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(fail()),
        None => (rest, None),
    };
    let mut total: i128 = 0;
    let mut parts = 0;
    // One `nX` part after another, units in the order given.
    let mut eat =
        |text: &str, units: &[(char, i128)], allow_fraction: char| -> Result<(), String> {
            let mut rest = text;
            let mut next_unit = 0;
            while !rest.is_empty() {
                let end = rest
                    .find(|c: char| c.is_ascii_alphabetic())
                    .ok_or_else(fail)?;
                let (number, tail) = rest.split_at(end);
                let unit = tail.chars().next().ok_or_else(fail)?;
                let idx = units[next_unit..]
                    .iter()
                    .position(|(u, _)| *u == unit)
                    .ok_or_else(fail)?
                    + next_unit;
                next_unit = idx + 1;
                let ms_per = units[idx].1;
                let (sign, digits) = match number.as_bytes().first() {
                    Some(b'-') => (-1, &number[1..]),
                    Some(b'+') => (1, &number[1..]),
                    _ => (1, number),
                };
                let (whole, frac) = match digits.split_once('.') {
                    Some((w, f)) if unit == allow_fraction => (w, f),
                    Some(_) => return Err(fail()),
                    None => (digits, ""),
                };
                if whole.is_empty() && frac.is_empty()
                    || !whole.bytes().all(|b| b.is_ascii_digit())
                    || !frac.bytes().all(|b| b.is_ascii_digit())
                    || whole.len() > 18
                    || frac.len() > 9
                {
                    return Err(fail());
                }
                let w: i128 = if whole.is_empty() {
                    0
                } else {
                    whole.parse().map_err(|_| fail())?
                };
                let f_ms: i128 = if frac.is_empty() {
                    0
                } else {
                    format!("{frac:0<3}")[..3].parse().map_err(|_| fail())?
                };
                total += sign * (w * ms_per + f_ms);
                parts += 1;
                rest = &tail[1..];
            }
            Ok(())
        };
    eat(date, &[('D', 86_400_000)], '\0')?;
    if let Some(t) = time {
        eat(t, &[('H', 3_600_000), ('M', 60_000), ('S', 1000)], 'S')?;
    }
    if parts == 0 {
        return Err(fail());
    }
    let total = if negate { -total } else { total };
    i64::try_from(total).map_err(|_| format!("duration {s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_durations() {
        assert_eq!(parse_duration_ms("PT15M").unwrap(), 15 * 60_000);
        assert_eq!(parse_duration_ms("P1DT2H30M").unwrap(), 95_400_000);
        assert_eq!(parse_duration_ms("P2D").unwrap(), 2 * 86_400_000);
        assert_eq!(parse_duration_ms("pt1.5s").unwrap(), 1500);
        assert_eq!(parse_duration_ms("PT0.0001S").unwrap(), 0);
        assert_eq!(parse_duration_ms("-PT1H").unwrap(), -3_600_000);
        assert_eq!(
            parse_duration_ms("PT-1H30M").unwrap(),
            -3_600_000 + 1_800_000
        );
        assert_eq!(parse_duration_ms("P1DT1H1M1.001S").unwrap(), 90_061_001);
        for bad in [
            "", "P", "PT", "1H", "PT1D", "P1H", "PT1M1H", "PT1.5M", "P1.5D", "PTxS", "PT1H1H",
            "P1DT", "PT-S",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

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
