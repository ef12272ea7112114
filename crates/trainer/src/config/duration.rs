//! Wall-time durations as the config writes them.

use std::time::Duration;

/// `"90s"`, `"10m"`, `"1h30m"`, `"2h"`: whole numbers with units h, m, s; more than zero.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut seconds = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        seconds = seconds.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
        number.clear();
    }
    (number.is_empty() && seconds > 0).then(|| Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Some(90));
        assert_eq!(secs("10m"), Some(600));
        assert_eq!(secs("1h30m"), Some(5400));
        for bad in ["", "10", "0s", "5 m", "1.5h", "m"] {
            assert_eq!(secs(bad), None, "{bad:?}");
        }
    }
}
