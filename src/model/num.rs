//! Number parsing and formatting exactly as Redis does it.
//!
//! Redis is strict about integers (`string2ll`: no sign but `-`, no leading zeros, no spaces,
//! nothing after the digits) and uses C's `strtod`/`strtold` for floats. Replies format
//! doubles with `%.17g`. INCRBYFLOAT and HINCRBYFLOAT compute in x87 `long double`, which
//! lives in [`crate::model::longdouble`].

/// Parses an integer the way Redis's `string2ll` does: optional `-`, then digits with no
/// leading zero (except `0` itself), and nothing else. Returns `None` for anything else,
/// including values outside `i64`.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match bytes[0] {
        b'-' => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(byte - b'0'))?;
    }
    if negative {
        if magnitude == 1 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(magnitude).ok().map(|value| -value)
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Parses a float the way Redis's `string2d`/`string2ld` do with `strtod`: no leading space,
/// the whole string consumed, not NaN. Accepts `inf`, `+inf`, `-inf`, `infinity` and
/// exponents. Returns `None` for anything else.
pub fn parse_f64(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if lower.len() - unsigned.len() > 1 {
        return None;
    }
    let value = if unsigned == "inf" || unsigned == "infinity" {
        f64::INFINITY
    } else {
        // Rust's grammar is close to strtod's decimal grammar; exclude what Rust accepts but
        // strtod spells differently, and reject NaN in every spelling.
        if unsigned.contains("nan") || unsigned.contains("inf") || unsigned.is_empty() {
            return None;
        }
        if unsigned.starts_with("0x") {
            return parse_hex_float(unsigned);
        }
        let value = unsigned.parse::<f64>().ok()?;
        // strtod reports ERANGE on overflow and on underflow to zero; Redis refuses both.
        let digits_nonzero = unsigned
            .split(['e', 'E'])
            .next()
            .is_some_and(|mantissa| mantissa.bytes().any(|byte| (b'1'..=b'9').contains(&byte)));
        if value.is_infinite() || (value == 0.0 && digits_nonzero) {
            return None;
        }
        value
    };
    if lower.starts_with('-') {
        Some(-value)
    } else {
        Some(value)
    }
}

/// `strtod` also reads hexadecimal floats (`0x1p4`, `0x10`); a rarely used corner, kept so
/// that the model does not reject what Redis accepts.
fn parse_hex_float(text: &str) -> Option<f64> {
    let body = &text[2..];
    let (mantissa, exponent) = match body.split_once('p') {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for digit in int_part.chars() {
        value = value * 16.0 + f64::from(digit.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for digit in frac_part.chars() {
        value += f64::from(digit.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    Some(value * 2f64.powi(exponent))
}

/// Formats a double as Redis's replies do (`%.17g`): 17 significant digits, trailing zeros
/// removed, exponent form below 1e-4 and from 1e17 up; `inf` and `-inf` spelled so.
pub fn format_g17(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // `{:.16e}` gives exactly 17 significant digits, correctly rounded, and the exponent.
    let scientific = format!("{value:.16e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("scientific formatting always has an exponent");
    let exponent: i32 = exponent.parse().expect("exponent is an integer");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..17).contains(&exponent) {
        let mantissa = format!("{}.{}", &digits[..1], &digits[1..]);
        let trimmed = trim_fraction(&mantissa);
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{trimmed}e{exponent_sign}{:02}", exponent.abs());
    }
    let text = if exponent >= 0 {
        let point = usize::try_from(exponent).expect("non-negative") + 1;
        format!("{}.{}", &digits[..point], &digits[point..])
    } else {
        let zeros = "0".repeat(usize::try_from(-exponent - 1).expect("positive"));
        format!("0.{zeros}{digits}")
    };
    format!("{sign}{}", trim_fraction(&text))
}

fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_string2ll() {
        let check = |text: &str, expected: Option<i64>| {
            assert_eq!(parse_i64(text.as_bytes()), expected, "{text:?}")
        };
        check("0", Some(0));
        check("-1", Some(-1));
        check("9223372036854775807", Some(i64::MAX));
        check("-9223372036854775808", Some(i64::MIN));
        check("9223372036854775808", None);
        check("+1", None);
        check("01", None);
        check("-0", None);
        check(" 1", None);
        check("1 ", None);
        check("", None);
        check("1.0", None);
        check("-", None);
    }

    #[test]
    fn floats_parse_like_strtod() {
        let check = |text: &str, expected: Option<f64>| {
            assert_eq!(parse_f64(text.as_bytes()), expected, "{text:?}")
        };
        check("1.5", Some(1.5));
        check("-inf", Some(f64::NEG_INFINITY));
        check("+inf", Some(f64::INFINITY));
        check("1e3", Some(1000.0));
        check(".5", Some(0.5));
        check("5.", Some(5.0));
        check("nan", None);
        check(" 1", None);
        check("1 ", None);
        check("abc", None);
        check("", None);
        check("0x10", Some(16.0));
        check("1e400", None);
        check("-1e400", None);
        check("1e-400", None);
        check("0e-400", Some(0.0));
    }

    #[test]
    fn doubles_format_like_printf_g17() {
        let check = |value: f64, expected: &str| assert_eq!(format_g17(value), expected);
        check(1.5, "1.5");
        check(0.1, "0.10000000000000001");
        check(3.0, "3");
        check(-2.5, "-2.5");
        check(1e17, "1e+17");
        check(1e16, "10000000000000000");
        check(0.0001, "0.0001");
        check(0.00001, "1.0000000000000001e-05");
        check(f64::INFINITY, "inf");
        check(123456789.0, "123456789");
    }
}
