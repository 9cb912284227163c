//! Money: integer micro-USD (`i64`, one millionth of a dollar) end to end,
//! never a float. The one rounding rule lives here, [`round_to_cents`]: a
//! line's exact amount (quantity × unit price, computed in `i128` and
//! checked back into `i64`) is rounded once, to whole cents, half away from
//! zero. Totals are sums of rounded lines, so they are whole cents too.

/// Micro-USD in one US cent.
pub const MICROS_PER_CENT: i64 = 10_000;
/// Micro-USD in one US dollar.
pub const MICROS_PER_USD: i64 = 1_000_000;

/// Errors of money arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount overflows 64-bit micro-USD: {0}")]
    Overflow(String),
}

/// Rounds micro-USD to whole cents, half away from zero: 5_000 µ$ (half a
/// cent) becomes 10_000 (one cent), -5_000 becomes -10_000, 4_999 becomes 0.
pub fn round_to_cents(micros: i64) -> Result<i64, MoneyError> {
    let rem = micros % MICROS_PER_CENT;
    let down = micros - rem;
    let rounded = if rem.abs() * 2 >= MICROS_PER_CENT {
        down.checked_add(rem.signum() * MICROS_PER_CENT)
    } else {
        Some(down)
    };
    rounded.ok_or_else(|| MoneyError::Overflow(format!("rounding {micros}")))
}

/// `quantity × unit_micros`, exact (in `i128`), refused when it does not
/// fit `i64`.
pub fn line_amount(quantity: i64, unit_micros: i64) -> Result<i64, MoneyError> {
    let exact = i128::from(quantity) * i128::from(unit_micros);
    i64::try_from(exact).map_err(|_| MoneyError::Overflow(format!("{quantity} × {unit_micros}")))
}

/// Sum of amounts, refused on overflow.
pub fn sum(amounts: impl IntoIterator<Item = i64>) -> Result<i64, MoneyError> {
    amounts.into_iter().try_fold(0i64, |acc, a| {
        acc.checked_add(a)
            .ok_or_else(|| MoneyError::Overflow("sum of lines".into()))
    })
}

/// `value × num / den`, rounded down (toward zero), exact in `i128`; `den`
/// must be positive. Used to prorate included units and minimums.
pub fn prorate_down(value: i64, num: i64, den: i64) -> Result<i64, MoneyError> {
    if den <= 0 {
        return Err(MoneyError::Overflow(format!("prorating by {num}/{den}")));
    }
    let exact = i128::from(value) * i128::from(num) / i128::from(den);
    i64::try_from(exact).map_err(|_| MoneyError::Overflow(format!("{value} × {num} / {den}")))
}

/// Formats micro-USD as dollars with exactly two decimals when the amount
/// is whole cents (`12.34`), otherwise with as many decimals as needed up to
/// six (`0.0025`): unit prices are often below a cent.
pub fn format_usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let dollars = abs / MICROS_PER_USD as u64;
    let frac = abs % MICROS_PER_USD as u64;
    let mut frac_s = format!("{frac:06}");
    while frac_s.len() > 2 && frac_s.ends_with('0') {
        frac_s.pop();
    }
    // Thousands separators for the dollars.
    let digits = dollars.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{frac_s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero_to_cents() {
        let cases = [
            (0, 0),
            (4_999, 0),
            (5_000, 10_000),
            (5_001, 10_000),
            (14_999, 10_000),
            (15_000, 20_000),
            (-4_999, 0),
            (-5_000, -10_000),
            (-15_000, -20_000),
            (12_345_000, 12_350_000),
            (12_344_999, 12_340_000),
        ];
        for (input, want) in cases {
            assert_eq!(round_to_cents(input).unwrap(), want, "{input}");
        }
        assert!(round_to_cents(i64::MAX).is_err());
    }

    #[test]
    fn amounts_are_exact_or_refused() {
        assert_eq!(line_amount(3, 2_500).unwrap(), 7_500);
        assert_eq!(line_amount(1_000_000, 10_000).unwrap(), 10_000_000_000);
        assert!(line_amount(i64::MAX, 2).is_err());
        assert!(sum([i64::MAX, 1]).is_err());
        assert_eq!(sum([1, 2, 3]).unwrap(), 6);
        assert_eq!(prorate_down(1_000, 15, 30).unwrap(), 500);
        assert_eq!(prorate_down(1_000, 1, 3).unwrap(), 333);
        assert!(prorate_down(1, 1, 0).is_err());
    }

    #[test]
    fn usd_formatting() {
        assert_eq!(format_usd(0), "0.00");
        assert_eq!(format_usd(10_000), "0.01");
        assert_eq!(format_usd(2_500), "0.0025");
        assert_eq!(format_usd(5_000), "0.005");
        assert_eq!(format_usd(1_234_567_890_000), "1,234,567.89");
        assert_eq!(format_usd(-1_500_000), "-1.50");
    }
}
