//! A software x87 80-bit `long double`, just enough for INCRBYFLOAT and HINCRBYFLOAT.
//!
//! Redis 7.0 on x86-64 parses both operands with `strtold`, adds them in the x87 extended
//! format (64-bit significand with an explicit integer bit, 15-bit exponent) and stores
//! `%.17Lf` with trailing zeros trimmed. An `f64` sum printed the same way differs in the
//! last digits (`10000 + 0.1` is `10000.09999999999999964` in Redis), so the model emulates
//! the format exactly: parsing, addition and printing are all correctly rounded, ties to
//! even, from exact values held in a small arbitrary-precision integer (`Natural`).
//! Subnormal numbers are handled exactly too (gradual underflow, as the x87 does).
//!
//! The work is bounded: Redis refuses operands of 5 KiB or more before parsing, and every
//! exponent is clamped to the format's range before any big number is built, so the largest
//! intermediate is a few tens of thousands of bits.

use crate::model::reply::msg;
use std::cmp::Ordering;

/// Redis's `MAX_LONG_DOUBLE_CHARS`: `string2ld` copies into a buffer of this size and refuses
/// anything that does not fit with its terminating NUL.
pub const LONG_DOUBLE_CHARS_MAX: usize = 5 * 1024;

/// The error INCRBYFLOAT and HINCRBYFLOAT give when the sum is infinite or NaN.
pub const NOT_FINITE_RESULT: &str = "ERR increment would produce NaN or Infinity";

/// The significand holds 64 bits, the integer bit included.
const SIGNIFICAND_BITS: i64 = 64;

/// The exponent of the least significant significand bit of the smallest numbers
/// (subnormals and the smallest normal): 2^-16382 is the smallest normal, 63 bits above.
const EXPONENT_MIN: i64 = -16382 - 63;

/// The same for the largest finite numbers: 2^16383 is the top bit's weight.
const EXPONENT_MAX: i64 = 16383 - 63;

/// Printing `%.17Lf` scales by 10^17 before rounding to an integer.
const PRINT_FRACTION_DIGITS: usize = 17;

/// An x87 extended-precision value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongDouble {
    /// The sign bit; zeros and infinities have one too.
    negative: bool,
    /// What kind of number, and its magnitude when finite.
    class: Class,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Zero,
    /// `significand * 2^exponent`. The significand's top bit is set (normal numbers) unless
    /// `exponent == EXPONENT_MIN` (subnormals), so every value has exactly one spelling.
    Finite {
        significand: u64,
        exponent: i64,
    },
    Infinite,
    /// Only `inf + -inf` makes one; the parser never does.
    NotANumber,
}

impl LongDouble {
    /// Positive zero, the value of a missing key or field.
    pub const ZERO: LongDouble = LongDouble {
        negative: false,
        class: Class::Zero,
    };

    /// Whether the value is neither infinite nor NaN (Redis's `isnan || isinf` test).
    pub fn is_finite(self) -> bool {
        matches!(self.class, Class::Zero | Class::Finite { .. })
    }
}

/// Parses `bytes` as Redis's `string2ld` does: `strtold`'s grammar (decimal with optional
/// fraction and exponent, `0x` hexadecimal with optional `p` exponent, `inf`/`infinity` in
/// any case, one optional sign) over the whole string, no leading space, no NaN, nothing
/// empty or of 5 KiB or more, and no result that overflowed to infinity or underflowed to
/// zero (`strtold` reports those as range errors). The value is correctly rounded.
pub fn parse(bytes: &[u8]) -> Option<LongDouble> {
    if bytes.is_empty() || bytes.len() >= LONG_DOUBLE_CHARS_MAX {
        return None;
    }
    let (negative, unsigned) = match bytes[0] {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if unsigned.eq_ignore_ascii_case(b"inf") || unsigned.eq_ignore_ascii_case(b"infinity") {
        return Some(LongDouble {
            negative,
            class: Class::Infinite,
        });
    }
    let number = if unsigned.len() > 2 && unsigned[..2].eq_ignore_ascii_case(b"0x") {
        scan_number(&unsigned[2..], 16, b'p')?
    } else {
        scan_number(unsigned, 10, b'e')?
    };
    let value = number.to_long_double(negative)?;
    match value.class {
        // An exact zero is fine; a non-zero number that rounded to zero is an underflow.
        Class::Zero if !number.digits.is_zero() => None,
        Class::Infinite => None,
        _ => Some(value),
    }
}

/// A scanned number before rounding: `digits * radix^scale * 2^binary_scale`, exactly.
struct Scanned {
    digits: Natural,
    /// The count of significant digits (no leading or trailing zeros), to bound the scale.
    digit_count: i64,
    /// The power of ten (decimal) or of two (hexadecimal) to apply.
    scale: i64,
    radix: u32,
}

/// Exponents beyond this magnitude are saturated; any number so scaled has already
/// overflowed or underflowed (5 KiB of digits move the value by at most 20480 binary places).
const SCALE_SATURATION: i64 = 1 << 40;

/// Scans `digits [. digits] [marker [sign] decimal-digits]` in `radix` (10 or 16), the whole
/// of `text`, with at least one mantissa digit. An exponent marker without digits after it
/// would end `strtold`'s number early, leaving bytes unconsumed, so it is refused.
fn scan_number(text: &[u8], radix: u32, exponent_marker: u8) -> Option<Scanned> {
    let (mantissa, exponent_text) = match text
        .iter()
        .position(|byte| byte.to_ascii_lowercase() == exponent_marker)
    {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let (integer_part, fraction_part) = match mantissa.iter().position(|&byte| byte == b'.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, &mantissa[..0]),
    };
    if integer_part.is_empty() && fraction_part.is_empty() {
        return None;
    }
    let digit_value = |byte: u8| char::from(byte).to_digit(radix);
    if !integer_part
        .iter()
        .chain(fraction_part)
        .all(|&byte| digit_value(byte).is_some())
    {
        return None;
    }
    let exponent = match exponent_text {
        Some(text) => parse_saturating_exponent(text)?,
        None => 0,
    };
    // Leading and trailing zeros carry no value: drop them, moving the scale instead.
    let all_digits: Vec<u8> = integer_part.iter().chain(fraction_part).copied().collect();
    let first = all_digits.iter().position(|&byte| byte != b'0');
    let last = all_digits.iter().rposition(|&byte| byte != b'0');
    let fraction_len = i64::try_from(fraction_part.len()).expect("under 5 KiB");
    let (significant, trailing_zeros) = match (first, last) {
        (Some(first), Some(last)) => (&all_digits[first..=last], all_digits.len() - 1 - last),
        _ => (&all_digits[..0], 0),
    };
    let mut digits = Natural::zero();
    for &byte in significant {
        digits.mul_add_small(radix, digit_value(byte).expect("checked above"));
    }
    let trailing_zeros = i64::try_from(trailing_zeros).expect("under 5 KiB");
    let (scale, radix) = if radix == 16 {
        // A hex digit is four binary places; the `p` exponent is already binary.
        (exponent + 4 * (trailing_zeros - fraction_len), 2)
    } else {
        (exponent + trailing_zeros - fraction_len, 10)
    };
    Some(Scanned {
        digits,
        digit_count: i64::try_from(significant.len()).expect("under 5 KiB"),
        scale,
        radix,
    })
}

/// Reads `[sign] decimal-digits` (all of `text`), saturating at [`SCALE_SATURATION`].
fn parse_saturating_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = digits.iter().fold(0i64, |acc, &digit| {
        (acc * 10 + i64::from(digit - b'0')).min(SCALE_SATURATION)
    });
    Some(if negative { -magnitude } else { magnitude })
}

impl Scanned {
    /// Rounds the exact value to the nearest long double (ties to even). `None` never
    /// happens for valid input; it keeps the arithmetic free of panics.
    fn to_long_double(&self, negative: bool) -> Option<LongDouble> {
        if self.digits.is_zero() {
            return Some(LongDouble {
                negative,
                class: Class::Zero,
            });
        }
        let infinite = LongDouble {
            negative,
            class: Class::Infinite,
        };
        let zero = LongDouble {
            negative,
            class: Class::Zero,
        };
        if self.radix == 2 {
            // digits * 2^scale: the digits hold at most 20480 bits, so beyond these bounds
            // the result is certainly infinite or zero.
            if self.scale > EXPONENT_MAX + SIGNIFICAND_BITS {
                return Some(infinite);
            }
            if self.scale < EXPONENT_MIN - 4 * LONG_DOUBLE_CHARS_MAX as i64 {
                return Some(zero);
            }
            return Some(round(negative, &self.digits, self.scale, false));
        }
        // The value lies in [10^(count + scale - 1), 10^(count + scale)). The largest long
        // double is about 1.19e4932 and half the smallest subnormal about 1.8e-4951.
        let magnitude = self.digit_count + self.scale;
        if magnitude - 1 > 4932 {
            return Some(infinite);
        }
        if magnitude < -4952 {
            return Some(zero);
        }
        if self.scale >= 0 {
            let scale = u32::try_from(self.scale).ok()?;
            let exact = self.digits.mul(&Natural::pow10(scale));
            return Some(round(negative, &exact, 0, false));
        }
        // digits / 10^k: divide with enough quotient bits (at least 66) that rounding sees
        // the guard bit, and let the remainder decide the sticky bit.
        let divisor = Natural::pow10(u32::try_from(-self.scale).ok()?);
        let shift = 66 + i64::try_from(divisor.bit_len()).ok()?
            - i64::try_from(self.digits.bit_len()).ok()?;
        let (numerator, divisor) = if shift >= 0 {
            (self.digits.shl(u64::try_from(shift).ok()?), divisor)
        } else {
            (
                self.digits.clone(),
                divisor.shl(u64::try_from(-shift).ok()?),
            )
        };
        let (quotient, remainder) = numerator.div_rem(&divisor);
        Some(round(negative, &quotient, -shift, !remainder.is_zero()))
    }
}

/// Rounds `value * 2^exponent` (plus a positive amount below one unit of `value` when
/// `sticky`) to the nearest long double, ties to even, with gradual underflow and overflow
/// to infinity. Callers pass at least two bits beyond the significand when `sticky` is set,
/// so the sticky amount never decides more than a tie.
fn round(negative: bool, value: &Natural, exponent: i64, sticky: bool) -> LongDouble {
    let length = i64::try_from(value.bit_len()).expect("bit lengths fit in i64");
    let mut dropped = length - SIGNIFICAND_BITS;
    if exponent + dropped < EXPONENT_MIN {
        dropped = EXPONENT_MIN - exponent;
    }
    let result_exponent = exponent + dropped;
    let (significand, result_exponent) = if dropped <= 0 {
        // Exact: the value fits (a sticky remainder never comes with so few bits).
        let widened = value.shl(u64::try_from(-dropped).expect("non-negative"));
        (widened.low_u64(), result_exponent)
    } else {
        let dropped_bits = u64::try_from(dropped).expect("positive");
        let kept = value.shr(dropped_bits).low_u64();
        let half = value.bit(dropped_bits - 1);
        let rest = sticky || value.any_bit_below(dropped_bits - 1);
        if half && (rest || kept & 1 == 1) {
            match kept.checked_add(1) {
                Some(next) => (next, result_exponent),
                // 2^64: one more binary place, and the significand becomes 2^63.
                None => (1 << 63, result_exponent + 1),
            }
        } else {
            (kept, result_exponent)
        }
    };
    if significand == 0 {
        return LongDouble {
            negative,
            class: Class::Zero,
        };
    }
    // Either 64 bits were kept, or the exponent was clamped to the minimum (a subnormal,
    // or the smallest normal when rounding carried into the integer bit).
    debug_assert!(significand >> 63 == 1 || result_exponent == EXPONENT_MIN);
    if result_exponent > EXPONENT_MAX {
        return LongDouble {
            negative,
            class: Class::Infinite,
        };
    }
    LongDouble {
        negative,
        class: Class::Finite {
            significand,
            exponent: result_exponent,
        },
    }
}

/// Adds two long doubles as the x87 does in round-to-nearest mode: correctly rounded, ties
/// to even, exact for any gap between the exponents; `x + -x` is `+0`, `inf + -inf` NaN.
pub fn add(left: LongDouble, right: LongDouble) -> LongDouble {
    let nan = LongDouble {
        negative: false,
        class: Class::NotANumber,
    };
    match (left.class, right.class) {
        (Class::NotANumber, _) | (_, Class::NotANumber) => nan,
        (Class::Infinite, Class::Infinite) if left.negative != right.negative => nan,
        (Class::Infinite, _) => left,
        (_, Class::Infinite) => right,
        (Class::Zero, Class::Zero) => LongDouble {
            negative: left.negative && right.negative,
            class: Class::Zero,
        },
        (Class::Zero, _) => right,
        (_, Class::Zero) => left,
        (
            Class::Finite {
                significand: left_significand,
                exponent: left_exponent,
            },
            Class::Finite {
                significand: right_significand,
                exponent: right_exponent,
            },
        ) => {
            // Order by exponent: with canonical significands, a larger exponent means a
            // strictly larger magnitude (or equal exponents).
            let (big, big_significand, big_exponent, small, small_significand, small_exponent) =
                if left_exponent >= right_exponent {
                    let (l, r) = (left_significand, right_significand);
                    (left, l, left_exponent, right, r, right_exponent)
                } else {
                    let (l, r) = (left_significand, right_significand);
                    (right, r, right_exponent, left, l, left_exponent)
                };
            add_finite(
                (big.negative, big_significand, big_exponent),
                (small.negative, small_significand, small_exponent),
            )
        }
    }
}

/// Sums two finite non-zero values given as `(negative, significand, exponent)`, the first
/// with the larger (or equal) exponent.
fn add_finite(big: (bool, u64, i64), small: (bool, u64, i64)) -> LongDouble {
    let (big_negative, big_significand, big_exponent) = big;
    let (small_negative, small_significand, small_exponent) = small;
    let gap = big_exponent - small_exponent;
    // Past this gap the smaller value is below a 70th of a unit of the larger significand
    // widened by 70 bits: it only decides the direction of the sticky remainder.
    const GAP_EXACT_MAX: i64 = 200;
    const WIDEN: u64 = 70;
    if gap > GAP_EXACT_MAX {
        let widened = Natural::from_u64(big_significand).shl(WIDEN);
        let exponent = big_exponent - WIDEN as i64;
        let base = if big_negative == small_negative {
            widened
        } else {
            // big - tiny lies strictly between (widened - 1) and widened.
            widened.sub(&Natural::from_u64(1))
        };
        return round(big_negative, &base, exponent, true);
    }
    let aligned_big = Natural::from_u64(big_significand).shl(u64::try_from(gap).expect("gap"));
    let small_value = Natural::from_u64(small_significand);
    if big_negative == small_negative {
        return round(
            big_negative,
            &aligned_big.add(&small_value),
            small_exponent,
            false,
        );
    }
    match aligned_big.cmp(&small_value) {
        Ordering::Greater => round(
            big_negative,
            &aligned_big.sub(&small_value),
            small_exponent,
            false,
        ),
        Ordering::Less => round(
            small_negative,
            &small_value.sub(&aligned_big),
            small_exponent,
            false,
        ),
        Ordering::Equal => LongDouble::ZERO,
    }
}

/// Formats as Redis's `ld2string` in human mode: `%.17Lf` (the exact binary value rounded to
/// 17 decimals, ties to even, as glibc does), then trailing zeros and a trailing `.` removed,
/// and `-0` written `0`. Infinities are `inf` and `-inf`.
pub fn format_human(value: LongDouble) -> String {
    let (significand, exponent) = match value.class {
        Class::Zero => return "0".to_owned(),
        Class::Infinite => return if value.negative { "-inf" } else { "inf" }.to_owned(),
        Class::NotANumber => return if value.negative { "-nan" } else { "nan" }.to_owned(),
        Class::Finite {
            significand,
            exponent,
        } => (significand, exponent),
    };
    let scaled = Natural::from_u64(significand).mul(&Natural::pow10(PRINT_FRACTION_DIGITS as u32));
    let units = if exponent >= 0 {
        scaled.shl(u64::try_from(exponent).expect("non-negative"))
    } else {
        let dropped = u64::try_from(-exponent).expect("positive");
        let kept = scaled.shr(dropped);
        let half = scaled.bit(dropped - 1);
        let rest = scaled.any_bit_below(dropped - 1);
        if half && (rest || kept.bit(0)) {
            kept.add(&Natural::from_u64(1))
        } else {
            kept
        }
    };
    let digits = units.to_decimal();
    let padded = if digits.len() <= PRINT_FRACTION_DIGITS {
        format!(
            "{}{digits}",
            "0".repeat(PRINT_FRACTION_DIGITS + 1 - digits.len())
        )
    } else {
        digits
    };
    let (integer, fraction) = padded.split_at(padded.len() - PRINT_FRACTION_DIGITS);
    let fraction = fraction.trim_end_matches('0');
    let sign = if value.negative { "-" } else { "" };
    let text = if fraction.is_empty() {
        format!("{sign}{integer}")
    } else {
        format!("{sign}{integer}.{fraction}")
    };
    if text == "-0" { "0".to_owned() } else { text }
}

/// The INCRBYFLOAT computation on a string value: `current` (`None` for a missing key, which
/// counts as 0) plus `increment`, as the bytes to store and reply, or the error to reply.
/// Either operand not parsing is `value is not a valid float` (the current value is checked
/// first, as Redis does); a NaN or infinite sum is [`NOT_FINITE_RESULT`].
pub fn incr_by_float(current: Option<&[u8]>, increment: &[u8]) -> Result<Vec<u8>, &'static str> {
    let current = match current {
        Some(bytes) => parse(bytes).ok_or(msg::NOT_FLOAT)?,
        None => LongDouble::ZERO,
    };
    let increment = parse(increment).ok_or(msg::NOT_FLOAT)?;
    sum_human(current, increment)
}

/// The shared last step of INCRBYFLOAT and HINCRBYFLOAT: the sum in human form, or
/// [`NOT_FINITE_RESULT`] when it is infinite or NaN.
pub fn sum_human(current: LongDouble, increment: LongDouble) -> Result<Vec<u8>, &'static str> {
    let sum = add(current, increment);
    if !sum.is_finite() {
        return Err(NOT_FINITE_RESULT);
    }
    Ok(format_human(sum).into_bytes())
}

/// A non-negative integer of any size: little-endian 32-bit limbs with no zero limb on top
/// (zero has none). Only what parsing, adding and printing need.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Natural {
    limbs: Vec<u32>,
}

impl Natural {
    fn zero() -> Natural {
        Natural { limbs: Vec::new() }
    }

    fn from_u64(value: u64) -> Natural {
        let mut natural = Natural {
            limbs: vec![value as u32, (value >> 32) as u32],
        };
        natural.trim();
        natural
    }

    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }

    fn bit_len(&self) -> u64 {
        match self.limbs.last() {
            None => 0,
            Some(&top) => 32 * (self.limbs.len() as u64 - 1) + u64::from(32 - top.leading_zeros()),
        }
    }

    fn bit(&self, index: u64) -> bool {
        let limb = usize::try_from(index / 32).unwrap_or(usize::MAX);
        self.limbs
            .get(limb)
            .is_some_and(|&value| (value >> (index % 32)) & 1 == 1)
    }

    /// Whether any bit below `index` is set.
    fn any_bit_below(&self, index: u64) -> bool {
        let whole = usize::try_from(index / 32).unwrap_or(usize::MAX);
        let whole_limbs = &self.limbs[..whole.min(self.limbs.len())];
        if whole_limbs.iter().any(|&limb| limb != 0) {
            return true;
        }
        let partial_bits = index % 32;
        match self.limbs.get(whole) {
            Some(&limb) if partial_bits > 0 => limb & ((1u32 << partial_bits) - 1) != 0,
            _ => false,
        }
    }

    /// The low 64 bits (callers only ask when the value fits).
    fn low_u64(&self) -> u64 {
        let low = u64::from(self.limbs.first().copied().unwrap_or(0));
        let high = u64::from(self.limbs.get(1).copied().unwrap_or(0));
        low | (high << 32)
    }

    /// `self = self * multiplier + addend`.
    fn mul_add_small(&mut self, multiplier: u32, addend: u32) {
        let mut carry = u64::from(addend);
        for limb in &mut self.limbs {
            let product = u64::from(*limb) * u64::from(multiplier) + carry;
            *limb = product as u32;
            carry = product >> 32;
        }
        if carry > 0 {
            self.limbs.push(carry as u32);
        }
        self.trim();
    }

    /// Divides in place by a small divisor and returns the remainder.
    fn div_rem_small(&mut self, divisor: u32) -> u32 {
        let mut remainder = 0u64;
        for limb in self.limbs.iter_mut().rev() {
            let current = (remainder << 32) | u64::from(*limb);
            *limb = (current / u64::from(divisor)) as u32;
            remainder = current % u64::from(divisor);
        }
        self.trim();
        remainder as u32
    }

    fn pow10(power: u32) -> Natural {
        let mut value = Natural::from_u64(1);
        let mut left = power;
        while left >= 9 {
            value.mul_add_small(1_000_000_000, 0);
            left -= 9;
        }
        value.mul_add_small(10u32.pow(left), 0);
        value
    }

    fn mul(&self, other: &Natural) -> Natural {
        if self.is_zero() || other.is_zero() {
            return Natural::zero();
        }
        let mut limbs = vec![0u32; self.limbs.len() + other.limbs.len()];
        for (i, &a) in self.limbs.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in other.limbs.iter().enumerate() {
                let total = u64::from(a) * u64::from(b) + u64::from(limbs[i + j]) + carry;
                limbs[i + j] = total as u32;
                carry = total >> 32;
            }
            limbs[i + other.limbs.len()] = carry as u32;
        }
        let mut product = Natural { limbs };
        product.trim();
        product
    }

    fn add(&self, other: &Natural) -> Natural {
        let length = self.limbs.len().max(other.limbs.len());
        let mut limbs = Vec::with_capacity(length + 1);
        let mut carry = 0u64;
        for index in 0..length {
            let a = u64::from(self.limbs.get(index).copied().unwrap_or(0));
            let b = u64::from(other.limbs.get(index).copied().unwrap_or(0));
            let total = a + b + carry;
            limbs.push(total as u32);
            carry = total >> 32;
        }
        limbs.push(carry as u32);
        let mut sum = Natural { limbs };
        sum.trim();
        sum
    }

    /// `self - other`; callers guarantee `self >= other`.
    fn sub(&self, other: &Natural) -> Natural {
        let mut difference = self.clone();
        difference.sub_assign(other);
        difference
    }

    fn sub_assign(&mut self, other: &Natural) {
        debug_assert!(*self >= *other, "subtraction would go negative");
        let mut borrow = 0i64;
        for index in 0..self.limbs.len() {
            let b = i64::from(other.limbs.get(index).copied().unwrap_or(0));
            let mut total = i64::from(self.limbs[index]) - b - borrow;
            borrow = 0;
            if total < 0 {
                total += 1 << 32;
                borrow = 1;
            }
            self.limbs[index] = total as u32;
        }
        self.trim();
    }

    fn shl(&self, bits: u64) -> Natural {
        if self.is_zero() {
            return Natural::zero();
        }
        let whole = usize::try_from(bits / 32).expect("shifts are bounded by the format");
        let partial = bits % 32;
        let mut limbs = vec![0u32; whole];
        limbs.reserve(self.limbs.len() + 1);
        let mut carry = 0u32;
        for &limb in &self.limbs {
            limbs.push((limb << partial) | carry);
            carry = if partial == 0 {
                0
            } else {
                limb >> (32 - partial)
            };
        }
        limbs.push(carry);
        let mut shifted = Natural { limbs };
        shifted.trim();
        shifted
    }

    fn shr(&self, bits: u64) -> Natural {
        let whole = usize::try_from(bits / 32).unwrap_or(usize::MAX);
        if whole >= self.limbs.len() {
            return Natural::zero();
        }
        let partial = bits % 32;
        let source = &self.limbs[whole..];
        let limbs = (0..source.len())
            .map(|index| {
                let high = if partial == 0 {
                    0
                } else {
                    source.get(index + 1).copied().unwrap_or(0) << (32 - partial)
                };
                (source[index] >> partial) | high
            })
            .collect();
        let mut shifted = Natural { limbs };
        shifted.trim();
        shifted
    }

    /// Quotient and remainder by shift-and-subtract long division: one compare and at most
    /// one subtraction per quotient bit (callers keep the quotient near 66 bits).
    fn div_rem(&self, divisor: &Natural) -> (Natural, Natural) {
        debug_assert!(!divisor.is_zero(), "division by zero");
        if *self < *divisor {
            return (Natural::zero(), self.clone());
        }
        let gap = self.bit_len() - divisor.bit_len();
        let mut remainder = self.clone();
        let mut shifted = divisor.shl(gap);
        let mut quotient_limbs = vec![0u32; usize::try_from(gap / 32 + 1).expect("bounded")];
        for position in (0..=gap).rev() {
            if remainder >= shifted {
                remainder.sub_assign(&shifted);
                quotient_limbs[(position / 32) as usize] |= 1 << (position % 32);
            }
            shifted = shifted.shr(1);
        }
        let mut quotient = Natural {
            limbs: quotient_limbs,
        };
        quotient.trim();
        (quotient, remainder)
    }

    fn to_decimal(&self) -> String {
        if self.is_zero() {
            return "0".to_owned();
        }
        // Peel nine digits at a time, least significant first.
        let mut rest = self.clone();
        let mut chunks = Vec::new();
        while !rest.is_zero() {
            chunks.push(rest.div_rem_small(1_000_000_000));
        }
        let mut text = String::with_capacity(chunks.len() * 9);
        let mut chunks = chunks.iter().rev();
        if let Some(top) = chunks.next() {
            text.push_str(&top.to_string());
        }
        for chunk in chunks {
            text.push_str(&format!("{chunk:09}"));
        }
        text
    }
}

impl PartialOrd for Natural {
    fn partial_cmp(&self, other: &Natural) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Natural {
    fn cmp(&self, other: &Natural) -> Ordering {
        self.limbs
            .len()
            .cmp(&other.limbs.len())
            .then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_FLOAT: &str = msg::NOT_FLOAT;

    /// One INCRBYFLOAT on a key holding `current`, against what Redis 7.0.15 replied.
    fn check(cases: &[(&str, &str, Result<&str, &str>)]) {
        for &(current, increment, expected) in cases {
            let got = incr_by_float(Some(current.as_bytes()), increment.as_bytes())
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            assert_eq!(
                got.as_deref().map_err(|message| *message),
                expected,
                "{current:?} + {increment:?}"
            );
        }
    }

    #[test]
    fn sums_match_recorded_redis_replies() {
        const HUGE_SUM: &str = "2000000000000000000017994648159118387741047888546581495876520164642531293192361871511698304167500994380700745017228549671807185112369345967826192521041497292574654271283687306588168510215212033579453305864740061102765895241989080589545563779241212358535223254194821301134374772211380178849830208012288";
        check(&[
            // The examples that an f64 sum gets wrong.
            ("10000", "0.1", Ok("10000.09999999999999964")),
            ("0.1", "0.2", Ok("0.3")),
            ("123456789.123", "0.001", Ok("123456789.12399999999615829")),
            ("1e300", "1e300", Ok(HUGE_SUM)),
            // Exponent forms.
            (".6648e+0", "-2958.3397319", Ok("-2957.67493190000000003")),
            (
                "0261330.5e-40",
                "-635308505306469.56",
                Ok("-635308505306469.55999755859375"),
            ),
            (
                "+09.340190125523369e+10",
                "+.0890",
                Ok("93401901255.32269000262022018"),
            ),
            (
                "+.432789E+3",
                "639051926623336.970622457",
                Ok("639051926623769.7596435546875"),
            ),
            ("+416.8587e17", "555143972.e+3", Ok("41685870555143972000")),
            // Tiny values and results.
            (
                "63720487.9753095",
                "-63720487.97530951",
                Ok("-0.00000000999716576"),
            ),
            (
                "-0.00000000015444356904481537640094757080078125",
                "-0",
                Ok("-0.00000000015444357"),
            ),
            (
                "+0.00000000000000000000",
                "0.0000000003",
                Ok("0.0000000003"),
            ),
            (
                "0.000000000000000000000475",
                "-26464713176544",
                Ok("-26464713176544"),
            ),
            ("1", "-1e-17", Ok("0.99999999999999999")),
            ("-6e-18", "0", Ok("-0.00000000000000001")),
            ("-5e-18", "0", Ok("0")),
            ("-1e-18", "0", Ok("0")),
            ("0.000000000000000025", "0", Ok("0.00000000000000002")),
            ("0x1p-16445", "0", Ok("0")),
            ("1.5", "0x1p-70", Ok("1.5")),
            // Negative results.
            (
                "-69833459251442563.682",
                "-4428339788786107.8",
                Ok("-74261799040228671.484375"),
            ),
            (
                "0.0000000000044666",
                "-46581730",
                Ok("-46581729.99999999999636202"),
            ),
            (
                "58183169555.2429275362",
                "-279.624365121951e+20",
                Ok("-27962436512136916830208"),
            ),
            (
                "-2465091.78",
                "0.0000000000",
                Ok("-2465091.77999999999997272"),
            ),
            // Cancelling to zero, never printed `-0`.
            ("90738.87E-10", "-90738.87E-10", Ok("0")),
            (
                "+800887905092744.371780713E2",
                "-800887905092744.371780713E2",
                Ok("0"),
            ),
            ("0x5d86c.p-16458", "0xcd9.4p-16393", Ok("0")),
            ("-0", "-0", Ok("0")),
            ("5", "-5", Ok("0")),
            // Integer-valued, past the 64-bit significand.
            (
                "-8910287981033301993457",
                "2.4651334411",
                Ok("-8910287981033301993472"),
            ),
            (
                "542326401991339.799667",
                "0xffffffffffffffffff",
                Ok("4722367025196047204864"),
            ),
            ("4611686018427387907", "1", Ok("4611686018427387908")),
            ("36893488147419103227", "4", Ok("36893488147419103232")),
            ("18446744073709551616", "1", Ok("18446744073709551616")),
            ("18446744073709551616", "3", Ok("18446744073709551620")),
            // Hexadecimal floats.
            (
                "-0x78d74.2363f925p-3",
                "-0xe10.8ep-16384",
                Ok("-61870.5172805275360588"),
            ),
            (
                "-0x8ad9932ff57d352.b2dp17",
                "0.000000000000004157",
                Ok("-81962515508196450590720"),
            ),
            (
                "-0x74ff99d6.p-16409",
                "+833129977881.8634698",
                Ok("833129977881.86346977949142456"),
            ),
            (
                "-0x5.2p18",
                "-0xb81dae.dac4d6c8190fep-16400",
                Ok("-1343488"),
            ),
            // Printing ties (exact binary values halfway between 17-decimal neighbours).
            ("0.000003814697265625", "0", Ok("0.00000381469726562")),
            (
                "5595.23644627054136435617692768573760986328125",
                "-0",
                Ok("5595.23644627054136436"),
            ),
            (
                "-25609.028294265270233154296875",
                "-0",
                Ok("-25609.02829426527023315"),
            ),
            // Errors: out of range operands, bad grammar, infinite sums.
            ("3", "1e-5000", Err(NOT_FLOAT)),
            ("1e5000", "1", Err(NOT_FLOAT)),
            ("1.8e4932", "0", Err(NOT_FLOAT)),
            ("0x1p-16445", "0x1p-16446", Err(NOT_FLOAT)),
            (
                "-0x318d26827e49bb.a6p16363",
                "0xe8eeeb40.p-16396",
                Err(NOT_FLOAT),
            ),
            ("--1", "-97.8575097142357132657740e+10", Err(NOT_FLOAT)),
            ("1e4932", "1e4932", Err(NOT_FINITE_RESULT)),
            ("1.18e4932", "1e4931", Err(NOT_FINITE_RESULT)),
            ("inf", "-inf", Err(NOT_FINITE_RESULT)),
            ("1", "INFINITY", Err(NOT_FINITE_RESULT)),
        ]);
    }

    #[test]
    fn parse_accepts_exactly_the_string2ld_grammar() {
        let check = |text: &str, expected: Option<&str>| {
            let got = parse(text.as_bytes()).map(format_human);
            assert_eq!(got.as_deref(), expected, "{text:?}");
        };
        check("1.5", Some("1.5"));
        check("+.5", Some("0.5"));
        check("5.", Some("5"));
        check("1.e1", Some("10"));
        check("1E+2", Some("100"));
        check("0X1.8P1", Some("3"));
        check("0x10", Some("16"));
        check("0x.8", Some("0.5"));
        check("-Infinity", Some("-inf"));
        check("iNf", Some("inf"));
        check("0e999999999999999999999999", Some("0"));
        check("4e-4951", Some("0"));
        for refused in [
            "",
            " 1",
            "1 ",
            ".",
            "-",
            "+",
            "e5",
            "1e",
            "1e+",
            "1.2.3",
            "--1",
            "+-1",
            "0x",
            "0x.",
            "0x1p",
            "0xg",
            "nan",
            "NaN",
            "-nan",
            "nan(1)",
            "infin",
            "infinityy",
            "1e-5000",
            "1e5000",
            "1e99999999999999999999999",
            "1\u{0}1",
            "1,5",
            "١",
        ] {
            assert_eq!(parse(refused.as_bytes()), None, "{refused:?}");
        }
    }

    #[test]
    fn parse_refuses_five_kib_and_stays_cheap_below() {
        let fits = format!(
            "{}.{}",
            "9".repeat(2000),
            "7".repeat(LONG_DOUBLE_CHARS_MAX - 2002)
        );
        assert!(parse(fits.as_bytes()).is_some());
        let too_long = format!("{fits}7");
        assert_eq!(too_long.len(), LONG_DOUBLE_CHARS_MAX);
        assert_eq!(parse(too_long.as_bytes()), None);
        // The largest scales either way still come out in range and print in full.
        let near_max = format!("1.{}e4932", "1".repeat(5000));
        let printed = format_human(parse(near_max.as_bytes()).expect("in range"));
        assert_eq!(printed.len(), 4933);
        let near_min = format!("{}e-9000", "1".repeat(5000));
        assert!(parse(near_min.as_bytes()).is_some());
    }

    #[test]
    fn addition_handles_zeros_infinities_and_gaps() {
        let value = |text: &str| parse(text.as_bytes()).expect("valid");
        let check = |left: &str, right: &str, expected: &str| {
            assert_eq!(
                format_human(add(value(left), value(right))),
                expected,
                "{left} + {right}"
            )
        };
        check("-0", "-0", "0");
        check("inf", "1", "inf");
        check("-inf", "1e4000", "-inf");
        check("inf", "-inf", "nan");
        check(
            "1e100",
            "-1e-300",
            "9999999999999999999669353532207342619498699019828496079271391541752018669482644324418977840117055488",
        );
        check("1", "-1e-300", "1");
        check("0x1p-16445", "-0x1p-16445", "0");
        assert!(add(value("0x1p-16445"), value("-0x1p-16445")) == LongDouble::ZERO);
        assert!(!add(value("inf"), value("-inf")).is_finite());
        assert!(add(value("1e4932"), value("1e4932")).class == Class::Infinite);
    }

    #[test]
    fn missing_value_counts_as_zero() {
        assert_eq!(incr_by_float(None, b"2.5"), Ok(b"2.5".to_vec()));
        assert_eq!(incr_by_float(None, b"x"), Err(msg::NOT_FLOAT));
        assert_eq!(incr_by_float(Some(b"x"), b"inf"), Err(msg::NOT_FLOAT));
    }
}
