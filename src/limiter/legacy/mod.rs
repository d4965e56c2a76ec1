//! new-api's rate limiters as built (`QuantumNous/new-api`, reference:
//! `/work/shared/reference/newapi-limiters.md`), command by command and bugs included, so that
//! the simulator can show each known race (R1-R14) and failure mode.
//!
//! | Path | new-api function | Here |
//! |---|---|---|
//! | A, B | `redisRateLimiter`, `userRedisRateLimiter` | [`list_log::ListLogLimiter`] |
//! | C1 | `redisRateLimitHandler` (success part) + `recordRedisRequest` | [`model_request::SuccessLimiter`] |
//! | C2 | `RedisLimiter.Allow` + `limiter.New` | [`model_request::TokenBucketLimiter`] |
//! | C | `redisRateLimitHandler` (both parts) | [`model_request::ModelRequestLimiter`] |
//! | D | `EmailVerificationRateLimit` | [`email::EmailLimiter`] |
//! | memory | `common/rate-limit.go`, `memoryRateLimiter`, `memoryRateLimitHandler` | [`in_memory`] |
//!
//! Every Redis call is its own round trip, as new-api's go-redis calls are: nothing is
//! pipelined and nothing is atomic except the token bucket's script. Each limiter wraps its
//! backend in [`Metered`] so that a verdict reports exactly the round trips new-api would make.
//!
//! **Clocks.** Paths A, B and C1 stamp entries with the *gateway's* wall clock, formatted with
//! Go's layout `2006-01-02T15:04:05.000Z` in local time: the `Z` is a literal, so a gateway
//! east of UTC writes times that look hours in the future to one in UTC (race R6). A
//! [`GatewayClock`] carries that UTC offset; [`format_newapi_time`] and [`parse_newapi_time`]
//! reproduce Go's `Format` and `Parse` for that one layout with plain civil-date arithmetic.
//! The token bucket reads the Redis server's clock (TIME) inside its script instead.

pub mod email;
pub mod in_memory;
pub mod list_log;
pub mod model_request;

use crate::algo::QuotaError;
use crate::keys::{Identity, KeyScheme};
use crate::limiter::LimiterError;
use crate::model::Reply;
use crate::redis::{self, Metered, Redis, Usage};

/// Go's layout string for new-api's timestamps (`timeFormat` in `middleware/rate-limit.go`).
pub const NEWAPI_TIME_LAYOUT: &str = "2006-01-02T15:04:05.000Z";

/// `RateLimitKeyExpirationDuration`: the TTL, in seconds, that paths A and B put on their
/// lists on every admission and denial (20 minutes, whatever the window).
pub const NEWAPI_KEY_TTL_S: i64 = 1_200;

/// Largest gateway UTC offset accepted, in seconds. Real zones stay within ±14 h; a day keeps
/// the arithmetic far from overflow while still allowing deliberately absurd skew.
pub const MAX_TZ_OFFSET_S: i64 = 86_400;

const MS_PER_DAY: i64 = 86_400_000;

/// A gateway's wall clock as new-api reads it: `time.Now()` in the process's local zone.
///
/// The simulation hands every request the true time in Unix ms; the gateway's zone shifts
/// what it writes (local time with a literal `Z`). Two gateways with different offsets
/// sharing one Redis reproduce race R6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayClock {
    tz_offset_s: i64,
}

impl GatewayClock {
    /// A gateway running in UTC (`TZ=UTC`, the usual container default).
    pub const UTC: GatewayClock = GatewayClock { tz_offset_s: 0 };

    /// A gateway whose local zone is `tz_offset_s` seconds east of UTC (Asia/Shanghai is
    /// `8 * 3600`). At most [`MAX_TZ_OFFSET_S`] either way.
    pub fn new(tz_offset_s: i64) -> Result<GatewayClock, QuotaError> {
        if tz_offset_s.abs() > MAX_TZ_OFFSET_S {
            return Err(QuotaError {
                field: "tz_offset_s",
                problem: format!("must be within ±{MAX_TZ_OFFSET_S} s (got {tz_offset_s})"),
            });
        }
        Ok(GatewayClock { tz_offset_s })
    }

    /// The UTC offset in seconds.
    pub fn tz_offset_s(&self) -> i64 {
        self.tz_offset_s
    }

    /// The local wall-clock reading, in ms since 1970-01-01T00:00:00 *as if it were UTC*:
    /// what Go's `Format` prints for `time.Now()` with this layout.
    pub fn local_ms(&self, now_ms: u64) -> i64 {
        i64::try_from(now_ms)
            .unwrap_or(i64::MAX)
            .saturating_add(self.tz_offset_s * 1_000)
    }

    /// `time.Now().Format(timeFormat)` at the true time `now_ms`.
    pub fn stamp(&self, now_ms: u64) -> String {
        format_newapi_time(self.local_ms(now_ms))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days-from-civil).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * month_index + 2) / 5 + 1).expect("1..=31");
    let month = u32::try_from(if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    })
    .expect("1..=12");
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats a local reading (ms since the epoch, as if UTC) the way Go formats
/// `2006-01-02T15:04:05.000Z`: the year padded to at least four digits (a minus sign before
/// the padding for years before 1), milliseconds truncated, and a literal `Z`.
///
/// ```
/// use ratelab::limiter::legacy::format_newapi_time;
/// assert_eq!(format_newapi_time(1_773_856_223_123), "2026-03-18T17:50:23.123Z");
/// assert_eq!(format_newapi_time(-1), "1969-12-31T23:59:59.999Z");
/// ```
pub fn format_newapi_time(local_ms: i64) -> String {
    let days = local_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = local_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let year_text = if year < 0 {
        format!("-{:04}", year.unsigned_abs())
    } else {
        format!("{year:04}")
    };
    format!(
        "{year_text}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000
    )
}

/// Go's `strconv`-free `atoi` in package time: an optional sign, then only digits.
fn go_atoi(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most four digits reach here (the caller slices), so this cannot overflow.
    let value = digits
        .iter()
        .fold(0i64, |acc, &digit| acc * 10 + i64::from(digit - b'0'));
    Some(if negative { -value } else { value })
}

/// Go's `getnum`: one or two digits; `fixed` demands two.
fn go_getnum(value: &[u8], fixed: bool) -> Option<(i64, &[u8])> {
    let first = *value.first().filter(|byte| byte.is_ascii_digit())?;
    match value.get(1) {
        Some(second) if second.is_ascii_digit() => Some((
            i64::from(first - b'0') * 10 + i64::from(second - b'0'),
            &value[2..],
        )),
        _ if fixed => None,
        _ => Some((i64::from(first - b'0'), &value[1..])),
    }
}

/// Parses new-api's timestamp the way Go's `time.Parse(timeFormat, text)` does, into ms since
/// the epoch as if UTC (Go reads the literal `Z` as nothing and defaults to UTC). The error
/// text follows Go's `ParseError`. A missing list entry (`LINDEX` on nothing) arrives here as
/// `""` and fails, which is new-api's spurious 500 (race R7, and `max == 0`).
///
/// ```
/// use ratelab::limiter::legacy::parse_newapi_time;
/// assert_eq!(parse_newapi_time("2026-03-18T17:50:23.123Z"), Ok(1_773_856_223_123));
/// assert!(parse_newapi_time("").is_err());
/// ```
pub fn parse_newapi_time(text: &str) -> Result<i64, String> {
    let cannot = |rest: &[u8], element: &str| {
        format!(
            "parsing time {text:?} as {NEWAPI_TIME_LAYOUT:?}: cannot parse {:?} as {element:?}",
            String::from_utf8_lossy(rest)
        )
    };
    let out_of_range = |what: &str| format!("parsing time {text:?}: {what} out of range");
    let literal = |rest: &'_ [u8], expected: u8| -> Result<(), String> {
        if rest.first() == Some(&expected) {
            Ok(())
        } else {
            Err(cannot(rest, &char::from(expected).to_string()))
        }
    };
    let value = text.as_bytes();

    if value.len() < 4 {
        return Err(cannot(value, "2006"));
    }
    let year = go_atoi(&value[..4]).ok_or_else(|| cannot(value, "2006"))?;
    let value = &value[4..];
    literal(value, b'-')?;
    let value = &value[1..];
    let (month, rest) = go_getnum(value, true).ok_or_else(|| cannot(value, "01"))?;
    if !(1..=12).contains(&month) {
        return Err(out_of_range("month"));
    }
    let value = rest;
    literal(value, b'-')?;
    let value = &value[1..];
    let (day, rest) = go_getnum(value, true).ok_or_else(|| cannot(value, "02"))?;
    let value = rest;
    literal(value, b'T')?;
    let value = &value[1..];
    let (hour, rest) = go_getnum(value, false).ok_or_else(|| cannot(value, "15"))?;
    if hour >= 24 {
        return Err(out_of_range("hour"));
    }
    let value = rest;
    literal(value, b':')?;
    let value = &value[1..];
    let (minute, rest) = go_getnum(value, true).ok_or_else(|| cannot(value, "04"))?;
    if minute >= 60 {
        return Err(out_of_range("minute"));
    }
    let value = rest;
    literal(value, b':')?;
    let value = &value[1..];
    let (second, rest) = go_getnum(value, true).ok_or_else(|| cannot(value, "05"))?;
    if second >= 60 {
        return Err(out_of_range("second"));
    }
    let value = rest;
    // ".000": a period or a comma, then exactly three characters that Go's atoi accepts.
    if value.len() < 4 || !matches!(value[0], b'.' | b',') {
        return Err(cannot(value, ".000"));
    }
    let millis = go_atoi(&value[1..4]).ok_or_else(|| cannot(value, ".000"))?;
    if millis < 0 {
        return Err(out_of_range("fractional second"));
    }
    let value = &value[4..];
    literal(value, b'Z')?;
    let value = &value[1..];
    if !value.is_empty() {
        return Err(format!(
            "parsing time {text:?}: extra text: {:?}",
            String::from_utf8_lossy(value)
        ));
    }
    let month = u32::try_from(month).expect("checked 1..=12");
    let day = u32::try_from(day).expect("two digits");
    if day < 1 || day > days_in_month(year, month) {
        return Err(out_of_range("day"));
    }
    Ok(days_from_civil(year, month, day) * MS_PER_DAY
        + hour * 3_600_000
        + minute * 60_000
        + second * 1_000
        + millis)
}

/// Whole seconds from `old_ms` to `now_ms` (both local readings), truncated toward zero as Go's
/// `int64(now.Sub(old).Seconds())` does: 1.999 s is 1, -0.5 s is 0.
pub fn whole_seconds_between(old_ms: i64, now_ms: i64) -> i64 {
    now_ms.saturating_sub(old_ms) / 1_000
}

/// Checks that a configured count is in `0..=max`.
fn check_count(field: &'static str, value: i64, max: i64) -> Result<u64, QuotaError> {
    if value < 0 || value > max {
        return Err(QuotaError {
            field,
            problem: format!("must be in 0..={max} (got {value})"),
        });
    }
    Ok(u64::try_from(value).expect("non-negative"))
}

/// Checks that a window is in `1..=max`.
fn check_window(field: &'static str, value: i64, max: i64) -> Result<u64, QuotaError> {
    if value < 1 || value > max {
        return Err(QuotaError {
            field,
            problem: format!("must be in 1..={max} (got {value})"),
        });
    }
    Ok(u64::try_from(value).expect("positive"))
}

/// Renders a key; a scheme the identity cannot fill is the caller's mistake, reported as an
/// unusable request rather than a panic.
fn render_key(scheme: &KeyScheme, identity: &Identity) -> Result<Vec<u8>, LimiterError> {
    scheme
        .render(identity, 0)
        .map_err(|error| LimiterError::Reply(format!("cannot build the limiter key: {error}")))
}

/// A read whose answer new-api uses: transport failures and error replies both stop the
/// request (new-api answers 500).
async fn read<R: Redis>(redis: &mut Metered<R>, cmd: redis::Cmd) -> Result<Reply, LimiterError> {
    match redis.exec(cmd).await? {
        Reply::Error(line) => Err(LimiterError::Reply(line)),
        reply => Ok(reply),
    }
}

/// A read of an integer (LLEN, INCR, TTL), as go-redis's `IntCmd.Result()`.
async fn read_integer<R: Redis>(
    redis: &mut Metered<R>,
    cmd: redis::Cmd,
) -> Result<i64, LimiterError> {
    match read(redis, cmd).await? {
        Reply::Integer(value) => Ok(value),
        other => Err(LimiterError::Reply(format!(
            "expected an integer, got {other:?}"
        ))),
    }
}

/// `LINDEX key -1` as new-api reads it: `oldTimeStr, _ := ...Result()`, so a nil, an error
/// reply or a transport failure all become `""`.
async fn read_oldest<R: Redis>(redis: &mut Metered<R>, key: &[u8]) -> String {
    match redis
        .exec(redis::Cmd::LIndex {
            key: key.to_vec(),
            index: -1,
        })
        .await
    {
        Ok(Reply::Bulk(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

/// A write whose result new-api throws away (LPUSH, LTRIM, EXPIRE): it still costs a round
/// trip, and nothing that goes wrong with it changes the decision.
async fn write_ignored<R: Redis>(redis: &mut Metered<R>, cmd: redis::Cmd) {
    // Ignoring the result is the behaviour reproduced: lost writes are race R8's over-admission.
    let _ = redis.exec(cmd).await;
}

/// The usage between two meter readings.
fn usage_since<R>(redis: &Metered<R>, before: Usage) -> Usage {
    redis.usage() - before
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shared test plumbing: a controllable clock, a command recorder, and a backend that
    //! yields before every command so two requests can be interleaved step by step.

    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    use crate::model::SharedModel;
    use crate::model::{Model, NodeConfig, Reply};
    use crate::redis::{Cmd, Error, Local, Redis};

    /// A clock the test moves by hand.
    #[derive(Clone)]
    pub struct TestClock(pub Arc<AtomicU64>);

    impl TestClock {
        pub fn new(now_ms: u64) -> TestClock {
            TestClock(Arc::new(AtomicU64::new(now_ms)))
        }
        pub fn set(&self, now_ms: u64) {
            self.0.store(now_ms, Ordering::SeqCst);
        }
        pub fn now(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A fresh model and a clock for it.
    pub fn node(now_ms: u64) -> (SharedModel, TestClock) {
        let model = Arc::new(Mutex::new(Model::new(NodeConfig::standalone(0))));
        (model, TestClock::new(now_ms))
    }

    /// A client of `model` on `clock`.
    pub fn client(model: &SharedModel, clock: &TestClock) -> Local {
        let time = clock.0.clone();
        Local::connect(model.clone(), Arc::new(move || time.load(Ordering::SeqCst)))
    }

    /// Runs one command on `model` outside any limiter (to inspect or to break things).
    pub fn run(model: &SharedModel, now_ms: u64, line: &[&str]) -> Reply {
        let mut model = model.lock().unwrap();
        let mut session = model.connect("test");
        let argv: Vec<Vec<u8>> = line.iter().map(|word| word.as_bytes().to_vec()).collect();
        let reply = model.exec(now_ms, &mut session, &argv);
        model.disconnect(&mut session);
        reply
    }

    /// The list at `key`, head first.
    pub fn list(model: &SharedModel, now_ms: u64, key: &str) -> Vec<String> {
        match run(model, now_ms, &["LRANGE", key, "0", "-1"]) {
            Reply::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Reply::Bulk(bytes) => String::from_utf8(bytes).unwrap(),
                    other => panic!("not a bulk: {other:?}"),
                })
                .collect(),
            other => panic!("not a list: {other:?}"),
        }
    }

    /// A backend that logs every command it forwards, one line each; a script source is
    /// shown as `<script>`.
    pub struct Recording<R> {
        pub inner: R,
        pub log: Arc<Mutex<Vec<String>>>,
    }

    impl<R> Recording<R> {
        pub fn new(inner: R) -> (Recording<R>, Arc<Mutex<Vec<String>>>) {
            let log = Arc::new(Mutex::new(Vec::new()));
            (
                Recording {
                    inner,
                    log: log.clone(),
                },
                log,
            )
        }
    }

    fn line(cmd: &Cmd) -> String {
        cmd.argv()
            .iter()
            .map(|word| {
                if word.len() > 64 {
                    "<script>".to_owned()
                } else {
                    String::from_utf8_lossy(word).into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    impl<R: Redis> Redis for Recording<R> {
        async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
            self.log.lock().unwrap().push(line(&cmd));
            self.inner.exec(cmd).await
        }

        async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
            self.log.lock().unwrap().extend(cmds.iter().map(line));
            self.inner.pipeline(cmds).await
        }
    }

    /// Takes the log's lines so far.
    pub fn drain(log: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        std::mem::take(&mut *log.lock().unwrap())
    }

    /// Pending once, then ready: one scheduling point.
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                context.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    /// A backend that yields before each command, so that polling two requests in turn runs
    /// their commands in lockstep: A1 B1 A2 B2 ...
    pub struct Lockstep<R>(pub R);

    impl<R: Redis> Redis for Lockstep<R> {
        async fn exec(&mut self, cmd: Cmd) -> Result<Reply, Error> {
            YieldOnce(false).await;
            self.0.exec(cmd).await
        }

        async fn pipeline(&mut self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, Error> {
            YieldOnce(false).await;
            self.0.pipeline(cmds).await
        }
    }

    /// Polls two futures in strict alternation until both finish.
    pub fn alternate<A: Future, B: Future>(first: A, second: B) -> (A::Output, B::Output) {
        let mut first = std::pin::pin!(first);
        let mut second = std::pin::pin!(second);
        let mut context = Context::from_waker(Waker::noop());
        let (mut first_out, mut second_out) = (None, None);
        for _ in 0..1_000 {
            if first_out.is_none()
                && let Poll::Ready(out) = first.as_mut().poll(&mut context)
            {
                first_out = Some(out);
            }
            if second_out.is_none()
                && let Poll::Ready(out) = second.as_mut().poll(&mut context)
            {
                second_out = Some(out);
            }
            if let (Some(_), Some(_)) = (&first_out, &second_out) {
                return (first_out.unwrap(), second_out.unwrap());
            }
        }
        panic!("the futures did not finish");
    }

    /// Runs a future to completion on a one-thread runtime.
    pub fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(local ms, text)`: formats to `text` and parses back to the same ms.
    fn check(cases: &[(i64, &str)]) {
        for &(local_ms, text) in cases {
            assert_eq!(format_newapi_time(local_ms), text, "format {local_ms}");
            assert_eq!(parse_newapi_time(text), Ok(local_ms), "parse {text}");
        }
    }

    #[test]
    fn timestamps_round_trip_across_epochs_and_leap_years() {
        check(&[
            (0, "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-86_400_000 * 365, "1969-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_709_164_800_123, "2024-02-29T00:00:00.123Z"),
            (1_773_856_223_123, "2026-03-18T17:50:23.123Z"),
            (-2_208_988_800_000, "1900-01-01T00:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
        ]);
        // Day counts agree with a day-by-day walk over 1600..2401 (leap rules 4/100/400).
        let mut days = days_from_civil(1600, 1, 1);
        for year in 1600..2401 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(civil_from_days(days), (year, month, day));
                    assert_eq!(days_from_civil(year, month, day), days);
                    days += 1;
                }
            }
        }
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
    }

    #[test]
    fn years_outside_four_digits_format_as_go_does_and_do_not_parse_back() {
        let year_10000 = days_from_civil(10_000, 1, 1) * MS_PER_DAY;
        assert_eq!(format_newapi_time(year_10000), "10000-01-01T00:00:00.000Z");
        assert!(parse_newapi_time("10000-01-01T00:00:00.000Z").is_err());
        let year_minus_1 = days_from_civil(-1, 1, 1) * MS_PER_DAY;
        assert_eq!(
            format_newapi_time(year_minus_1),
            "-0001-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn parse_accepts_and_refuses_what_go_does() {
        let layout = NEWAPI_TIME_LAYOUT;
        for (text, expected) in [
            (
                "",
                Err(format!(
                    "parsing time \"\" as \"{layout}\": cannot parse \"\" as \"2006\""
                )),
            ),
            // Go's hour takes one digit when the next is not a digit.
            ("2026-03-18T7:50:23.123Z", Ok(1_773_820_223_123)),
            ("2026-03-18T17:50:23,123Z", Ok(1_773_856_223_123)),
            (
                "+026-01-01T00:00:00.000Z",
                Ok(days_from_civil(26, 1, 1) * MS_PER_DAY),
            ),
            (
                "2026-13-01T00:00:00.000Z",
                Err("parsing time \"2026-13-01T00:00:00.000Z\": month out of range".into()),
            ),
            (
                "2025-02-29T00:00:00.000Z",
                Err("parsing time \"2025-02-29T00:00:00.000Z\": day out of range".into()),
            ),
            (
                "2026-03-18T24:00:00.000Z",
                Err("parsing time \"2026-03-18T24:00:00.000Z\": hour out of range".into()),
            ),
            (
                "2026-03-18T17:50:23.123",
                Err(format!(
                    "parsing time \"2026-03-18T17:50:23.123\" as \"{layout}\": cannot parse \"\" as \"Z\""
                )),
            ),
            (
                "2026-03-18T17:50:23.12Z",
                Err(format!(
                    "parsing time \"2026-03-18T17:50:23.12Z\" as \"{layout}\": cannot parse \".12Z\" as \".000\""
                )),
            ),
            (
                "2026-03-18T17:50:23.123Z ",
                Err("parsing time \"2026-03-18T17:50:23.123Z \": extra text: \" \"".into()),
            ),
            (
                "2026-3-18T17:50:23.123Z",
                Err(format!(
                    "parsing time \"2026-3-18T17:50:23.123Z\" as \"{layout}\": cannot parse \"3-18T17:50:23.123Z\" as \"01\""
                )),
            ),
        ] {
            assert_eq!(parse_newapi_time(text), expected, "{text:?}");
        }
    }

    #[test]
    fn gateway_clock_writes_local_time_with_a_literal_z() {
        let shanghai = GatewayClock::new(8 * 3_600).unwrap();
        assert_eq!(shanghai.stamp(0), "1970-01-01T08:00:00.000Z");
        let west = GatewayClock::new(-5 * 3_600).unwrap();
        assert_eq!(west.stamp(1_000), "1969-12-31T19:00:01.000Z");
        assert_eq!(
            GatewayClock::UTC.stamp(1_773_856_223_123),
            "2026-03-18T17:50:23.123Z"
        );
        assert!(GatewayClock::new(MAX_TZ_OFFSET_S + 1).is_err());
        assert!(GatewayClock::new(-MAX_TZ_OFFSET_S - 1).is_err());
        assert_eq!(GatewayClock::UTC.local_ms(u64::MAX), i64::MAX);
    }

    #[test]
    fn elapsed_seconds_truncate_toward_zero() {
        for (old_ms, now_ms, seconds) in [
            (0, 1_999, 1),
            (0, 999, 0),
            (1_000, 500, 0),
            (2_000, 500, -1),
            (0, 60_000, 60),
            (i64::MIN, i64::MAX, i64::MAX / 1_000),
        ] {
            assert_eq!(
                whole_seconds_between(old_ms, now_ms),
                seconds,
                "{old_ms} -> {now_ms}"
            );
        }
    }
}
