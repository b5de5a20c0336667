//! Prices: the per-part price of a destination, from the longest matching prefix of the
//! configured table, else the default (DESIGN section 4).
//!
//! Money is integer micro-units of the account's currency everywhere inside smswire; it
//! becomes a decimal only at the edges (the JSON `price`, the admin CLI).

use std::collections::BTreeMap;

/// Micro-units in one unit of currency.
pub const MICROS: i64 = 1_000_000;

/// The price table, ready to be asked.
#[derive(Debug, Clone)]
pub struct PriceTable {
    default_micros: i64,
    /// Country-code (or longer) prefix -> price per part.
    by_prefix: BTreeMap<String, i64>,
}

impl PriceTable {
    /// Builds a table from per-part prices in currency units.
    pub fn new(default_price: f64, prefixes: &BTreeMap<String, f64>) -> Self {
        Self {
            default_micros: to_micros(default_price),
            by_prefix: prefixes
                .iter()
                .map(|(p, price)| (p.clone(), to_micros(*price)))
                .collect(),
        }
    }

    /// The price of a message of `parts` parts to `digits` (E.164 without `+`).
    pub fn price(&self, digits: &str, parts: usize) -> i64 {
        let per_part = (1..=digits.len())
            .rev()
            .find_map(|n| self.by_prefix.get(&digits[..n]))
            .copied()
            .unwrap_or(self.default_micros);
        per_part * parts as i64
    }
}

/// Converts an amount in currency units to micro-units, rounding to the nearest.
pub fn to_micros(amount: f64) -> i64 {
    (amount * MICROS as f64).round() as i64
}

/// Converts micro-units to the JSON number of the API (`0.08`).
pub fn to_units(micros: i64) -> f64 {
    micros as f64 / MICROS as f64
}

/// Parses a decimal amount such as `10`, `10.5` or `-0.25` exactly into micro-units.
pub fn parse_amount(text: &str) -> Result<i64, String> {
    let bad = || format!("amount {text:?} is not a decimal number with at most 6 decimals");
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!frac.is_empty() && !digits(frac)) || frac.len() > 6 {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac_micros: i64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    let micros = whole
        .checked_mul(MICROS)
        .and_then(|w| w.checked_add(frac_micros))
        .ok_or_else(bad)?;
    Ok(if negative { -micros } else { micros })
}

/// Formats micro-units as a decimal with two to six decimals (`10.50`, `0.075`).
pub fn format_amount(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let frac = format!("{:06}", abs % MICROS as u64);
    let trimmed = frac.trim_end_matches('0');
    let frac = if trimmed.len() < 2 {
        &frac[..2]
    } else {
        trimmed
    };
    format!("{sign}{}.{frac}", abs / MICROS as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let prefixes = BTreeMap::from([("33".to_string(), 0.06), ("336".to_string(), 0.05)]);
        let table = PriceTable::new(0.08, &prefixes);
        assert_eq!(table.price("33612345678", 2), 100_000);
        assert_eq!(table.price("33123456789", 1), 60_000);
        assert_eq!(table.price("590690112233", 1), 80_000);
    }

    #[test]
    fn amounts_round_trip() {
        assert_eq!(parse_amount("10.5"), Ok(10_500_000));
        assert_eq!(parse_amount("-0.25"), Ok(-250_000));
        assert!(parse_amount("1.2345678").is_err());
        assert!(parse_amount("abc").is_err());
        assert_eq!(format_amount(10_500_000), "10.50");
        assert_eq!(format_amount(75_000), "0.075");
        assert_eq!(to_units(80_000), 0.08);
    }
}
