//! Sorted-set commands: ZADD (NX/XX/GT/LT/CH/INCR), ZINCRBY, ZREM, ZCARD, ZSCORE, ZMSCORE,
//! ZCOUNT, ZLEXCOUNT, ZRANK, ZREVRANK, ZRANGE (by rank, BYSCORE, BYLEX, REV, LIMIT,
//! WITHSCORES) and its older forms, and ZREMRANGEBY{RANK,SCORE,LEX}, with Redis 7.0.15's
//! replies and errors.
//!
//! Scores are printed as Redis 7.0 prints doubles in RESP2 (`%.17g`, see [`num::format_g17`]).
//! Every ZRANGE form shares one parser that follows Redis's own option loop, so option errors
//! come out in the same order as Redis's.

use super::{is_opt, len_reply as int, read_as, write_as};
use crate::model::command::{DENYOOM, FAST, Handler, READONLY, Spec, WRITE};
use crate::model::db::Value;
use crate::model::num;
use crate::model::reply::{Protocol, Reply, bulk, err, msg};
use crate::model::zset::{LexRange, ScoreRange, ZSet};
use crate::model::{Core, Ctx};

use super::lists::{clamp_range, non_negative};

/// Redis's reply when a score range bound does not parse.
const BAD_SCORE_RANGE: &str = "ERR min or max is not a float";
/// Redis's reply when a lexicographic range bound does not parse.
const BAD_LEX_RANGE: &str = "ERR min or max not valid string range item";

/// Redis's `zset-max-listpack-entries` default.
pub const LISTPACK_ENTRIES_MAX: usize = 128;
/// Redis's `zset-max-listpack-value` default, in bytes.
pub const LISTPACK_VALUE_MAX: usize = 64;

/// A data command whose only key is the first argument.
const fn keyed(
    name: &'static str,
    arity: i32,
    flags: u32,
    handler: fn(&mut Core, &mut Ctx, &[Vec<u8>]) -> Reply,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: 1,
        last_key: 1,
        step: 1,
        handler: Handler::Data(handler),
    }
}

/// The sorted-set commands.
pub static COMMANDS: &[Spec] = &[
    keyed("zadd", -4, WRITE | DENYOOM | FAST, zadd),
    keyed("zincrby", 4, WRITE | DENYOOM | FAST, zincrby),
    keyed("zrem", -3, WRITE | FAST, zrem),
    keyed("zcard", 2, READONLY | FAST, zcard),
    keyed("zscore", 3, READONLY | FAST, zscore),
    keyed("zmscore", -3, READONLY | FAST, zmscore),
    keyed("zcount", 4, READONLY | FAST, zcount),
    keyed("zlexcount", 4, READONLY | FAST, zlexcount),
    keyed("zrank", 3, READONLY | FAST, zrank),
    keyed("zrevrank", 3, READONLY | FAST, zrevrank),
    keyed("zrange", -4, READONLY, zrange),
    keyed("zrevrange", -4, READONLY, zrevrange),
    keyed("zrangebyscore", -4, READONLY, zrangebyscore),
    keyed("zrevrangebyscore", -4, READONLY, zrevrangebyscore),
    keyed("zrangebylex", -4, READONLY, zrangebylex),
    keyed("zrevrangebylex", -4, READONLY, zrevrangebylex),
    keyed("zremrangebyrank", 4, WRITE, zremrangebyrank),
    keyed("zremrangebyscore", 4, WRITE, zremrangebyscore),
    keyed("zremrangebylex", 4, WRITE, zremrangebylex),
    keyed("zpopmin", -2, WRITE | FAST, zpopmin),
    keyed("zpopmax", -2, WRITE | FAST, zpopmax),
];

/// A score as Redis replies it.
fn score_reply(score: f64) -> Reply {
    crate::model::reply::double(score)
}

/// The sorted set under `key` for reading (counts a hit or miss): `Ok(None)` if absent.
fn read_zset<'a>(core: &'a mut Core, ctx: &Ctx, key: &[u8]) -> Result<Option<&'a ZSet>, Reply> {
    read_as(core, ctx, key, Value::as_zset)
}

/// The sorted set under `key` for writing: `Ok(None)` if absent.
fn write_zset<'a>(
    core: &'a mut Core,
    ctx: &Ctx,
    key: &[u8],
) -> Result<Option<&'a mut ZSet>, Reply> {
    write_as(core, ctx, key, Value::as_zset_mut)
}

/// Parses a score argument as Redis's getDoubleFromObject does: the whole string, no leading
/// space, not NaN, and not a finite number so large or so small that `strtod` reports a range
/// error (`1e400`, `1e-400`); `inf` spelled out is accepted.
pub fn score_arg(arg: &[u8]) -> Result<f64, Reply> {
    let value = num::parse_f64(arg).ok_or_else(|| err(msg::NOT_FLOAT))?;
    let lower = arg.to_ascii_lowercase();
    let unsigned = lower.strip_prefix(b"-").or(lower.strip_prefix(b"+"));
    let unsigned = unsigned.unwrap_or(&lower);
    let spelled_infinite = unsigned.starts_with(b"inf");
    let overflowed = value.is_infinite() && !spelled_infinite;
    let mantissa = unsigned.split(|&byte| byte == b'e').next().unwrap_or(b"");
    let underflowed = value == 0.0
        && !unsigned.starts_with(b"0x")
        && mantissa.iter().any(|byte| (b'1'..=b'9').contains(byte));
    if overflowed || underflowed {
        return Err(err(msg::NOT_FLOAT));
    }
    Ok(value)
}

/// ZADD's options after parsing.
#[derive(Clone, Copy, Debug, Default)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// ZADD and ZINCRBY (which is ZADD with INCR set, and goes through the same option loop, as
/// in Redis: `ZINCRBY k nx m` is a syntax error, not an increment).
fn add_generic(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>], incr: bool) -> Reply {
    let mut flags = AddFlags {
        incr,
        ..AddFlags::default()
    };
    let mut index = 2;
    while let Some(option) = argv.get(index) {
        let flag = match option.to_ascii_lowercase().as_slice() {
            b"nx" => &mut flags.nx,
            b"xx" => &mut flags.xx,
            b"gt" => &mut flags.gt,
            b"lt" => &mut flags.lt,
            b"ch" => &mut flags.ch,
            b"incr" => &mut flags.incr,
            _ => break,
        };
        *flag = true;
        index += 1;
    }
    let rest = &argv[index..];
    if rest.is_empty() || rest.len() % 2 == 1 {
        return err(msg::SYNTAX);
    }
    if flags.nx && flags.xx {
        return err("ERR XX and NX options at the same time are not compatible");
    }
    if (flags.nx && (flags.gt || flags.lt)) || (flags.gt && flags.lt) {
        return err("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if flags.incr && rest.len() > 2 {
        return err("ERR INCR option supports a single increment-element pair");
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks_exact(2) {
        match score_arg(&pair[0]) {
            Ok(score) => pairs.push((score, &pair[1])),
            Err(reply) => return reply,
        }
    }
    let key = &argv[1];
    let exists = match write_zset(core, ctx, key) {
        Err(reply) => return reply,
        Ok(found) => found.is_some(),
    };
    if !exists {
        if flags.xx {
            return if flags.incr {
                Reply::Nil
            } else {
                Reply::Integer(0)
            };
        }
        core.db(ctx)
            .insert(key.clone(), Value::ZSet(ZSet::default()), None);
    }
    let Ok(Some(zset)) = write_zset(core, ctx, key) else {
        unreachable!("the sorted set was just found or created");
    };
    let (mut added, mut updated, mut processed) = (0usize, 0usize, 0usize);
    let mut last_score = 0.0;
    let mut failed = None;
    for (score, member) in pairs {
        match add_one(zset, flags, score, member) {
            Err(reply) => {
                failed = Some(reply);
                break;
            }
            Ok(Outcome::Nothing) => {}
            Ok(Outcome::Added(score)) => {
                added += 1;
                processed += 1;
                last_score = score;
            }
            Ok(Outcome::Updated(score)) => {
                updated += 1;
                processed += 1;
                last_score = score;
            }
            Ok(Outcome::Unchanged(score)) => {
                processed += 1;
                last_score = score;
            }
        }
    }
    if added > 0 || updated > 0 {
        core.signal_modified(ctx.db, key);
    }
    if let Some(reply) = failed {
        return reply;
    }
    if flags.incr {
        if processed > 0 {
            score_reply(last_score)
        } else {
            Reply::Nil
        }
    } else if flags.ch {
        int(added + updated)
    } else {
        int(added)
    }
}

/// What one ZADD pair did.
enum Outcome {
    /// NX on an existing member, XX on a new one, or GT/LT refusing the new score.
    Nothing,
    /// A new member with this score.
    Added(f64),
    /// An existing member moved to this score.
    Updated(f64),
    /// An existing member whose score was already this.
    Unchanged(f64),
}

/// Applies one score/member pair with ZADD's flags, as Redis's zsetAdd does.
fn add_one(zset: &mut ZSet, flags: AddFlags, score: f64, member: &[u8]) -> Result<Outcome, Reply> {
    let Some(current) = zset.score(member) else {
        if flags.xx {
            return Ok(Outcome::Nothing);
        }
        zset.insert(member.to_vec(), stored_score(zset, member, true, score));
        return Ok(Outcome::Added(score));
    };
    if flags.nx {
        return Ok(Outcome::Nothing);
    }
    let score = if flags.incr { current + score } else { score };
    if score.is_nan() {
        return Err(err("ERR resulting score is not a number (NaN)"));
    }
    if (flags.lt && score >= current) || (flags.gt && score <= current) {
        return Ok(Outcome::Nothing);
    }
    // Compared as doubles, so -0 and 0 are the same score and nothing changes.
    if score == current {
        return Ok(Outcome::Unchanged(score));
    }
    zset.insert(member.to_vec(), stored_score(zset, member, false, score));
    Ok(Outcome::Updated(score))
}

/// The score as the set will keep it. A small Redis sorted set (a listpack: at most
/// [`LISTPACK_ENTRIES_MAX`] members of at most [`LISTPACK_VALUE_MAX`] bytes) does not keep
/// the sign of a zero score, so `-0` reads back as `0` there, while ZADD INCR still answers
/// `-0`; a large one (a skiplist) keeps it. The model judges smallness by the current size
/// and the member, not by the set's history.
fn stored_score(zset: &ZSet, member: &[u8], is_new: bool, score: f64) -> f64 {
    let len_after = zset.len() + usize::from(is_new);
    if score == 0.0 && len_after <= LISTPACK_ENTRIES_MAX && member.len() <= LISTPACK_VALUE_MAX {
        0.0
    } else {
        score
    }
}

fn zadd(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    add_generic(core, ctx, argv, false)
}

fn zincrby(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    add_generic(core, ctx, argv, true)
}

fn zrem(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let key = &argv[1];
    let zset = match write_zset(core, ctx, key) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Integer(0),
        Ok(Some(zset)) => zset,
    };
    let removed = argv[2..]
        .iter()
        .filter(|member| zset.remove(member))
        .count();
    if removed > 0 {
        core.db(ctx).remove_if_empty(key);
        core.signal_modified(ctx.db, key);
    }
    int(removed)
}

fn zcard(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_zset(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(zset) => int(zset.map_or(0, ZSet::len)),
    }
}

fn zscore(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_zset(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(zset) => zset
            .and_then(|zset| zset.score(&argv[2]))
            .map_or(Reply::Nil, score_reply),
    }
}

fn zmscore(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match read_zset(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(zset) => Reply::Array(
            argv[2..]
                .iter()
                .map(|member| {
                    zset.and_then(|zset| zset.score(member))
                        .map_or(Reply::Nil, score_reply)
                })
                .collect(),
        ),
    }
}

fn zcount(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let Some(range) = ScoreRange::parse(&argv[2], &argv[3]) else {
        return err(BAD_SCORE_RANGE);
    };
    match read_zset(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(None) => Reply::Integer(0),
        Ok(Some(zset)) => int(zset.range_by_score(&range, false).count()),
    }
}

fn zlexcount(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    let Some(range) = LexRange::parse(&argv[2], &argv[3]) else {
        return err(BAD_LEX_RANGE);
    };
    match read_zset(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(None) => Reply::Integer(0),
        Ok(Some(zset)) => int(zset.range_by_lex(&range, false).count()),
    }
}

fn rank_generic(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>], reverse: bool) -> Reply {
    match read_zset(core, ctx, &argv[1]) {
        Err(reply) => reply,
        Ok(None) => Reply::Nil,
        Ok(Some(zset)) => match zset.rank(&argv[2]) {
            None => Reply::Nil,
            Some(rank) if reverse => int(zset.len() - 1 - rank),
            Some(rank) => int(rank),
        },
    }
}

fn zrank(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    rank_generic(core, ctx, argv, false)
}

fn zrevrank(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    rank_generic(core, ctx, argv, true)
}

/// How a ZRANGE form reads its two bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeKind {
    /// Positions (ZRANGE's default).
    Rank,
    /// BYSCORE.
    Score,
    /// BYLEX.
    Lex,
}

/// A parsed ZRANGE request.
enum Request {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

/// Every ZRANGE form: `kind` and `reverse` are fixed by the older commands (ZREVRANGE,
/// ZRANGEBYSCORE...) and left open (`None`) by ZRANGE itself, whose options may set them once.
fn range_generic(
    core: &mut Core,
    ctx: &mut Ctx,
    argv: &[Vec<u8>],
    kind: Option<RangeKind>,
    reverse: Option<bool>,
) -> Reply {
    let (mut kind, mut reverse) = (kind, reverse);
    let mut with_scores = false;
    let mut offset: i64 = 0;
    let mut limit: i64 = -1;
    let mut index = 4;
    while index < argv.len() {
        let option = &argv[index];
        let left = argv.len() - index - 1;
        if is_opt(option, "withscores") {
            with_scores = true;
        } else if is_opt(option, "limit") && left >= 2 {
            match (
                super::arg_i64(&argv[index + 1]),
                super::arg_i64(&argv[index + 2]),
            ) {
                (Ok(first), Ok(count)) => (offset, limit) = (first, count),
                (Err(reply), _) | (_, Err(reply)) => return reply,
            }
            index += 2;
        } else if reverse.is_none() && is_opt(option, "rev") {
            reverse = Some(true);
        } else if kind.is_none() && is_opt(option, "bylex") {
            kind = Some(RangeKind::Lex);
        } else if kind.is_none() && is_opt(option, "byscore") {
            kind = Some(RangeKind::Score);
        } else {
            return err(msg::SYNTAX);
        }
        index += 1;
    }
    let reverse = reverse.unwrap_or(false);
    let kind = kind.unwrap_or(RangeKind::Rank);
    // Redis checks the value, not whether LIMIT was given: `LIMIT 0 -1` passes.
    if limit != -1 && kind == RangeKind::Rank {
        return err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if with_scores && kind == RangeKind::Lex {
        return err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    // Reversed score and lex ranges are written high bound first.
    let (low, high) = if reverse && kind != RangeKind::Rank {
        (&argv[3], &argv[2])
    } else {
        (&argv[2], &argv[3])
    };
    let request = match kind {
        RangeKind::Rank => match (super::arg_i64(low), super::arg_i64(high)) {
            (Ok(start), Ok(end)) => Request::Rank(start, end),
            (Err(reply), _) | (_, Err(reply)) => return reply,
        },
        RangeKind::Score => match ScoreRange::parse(low, high) {
            Some(range) => Request::Score(range),
            None => return err(BAD_SCORE_RANGE),
        },
        RangeKind::Lex => match LexRange::parse(low, high) {
            Some(range) => Request::Lex(range),
            None => return err(BAD_LEX_RANGE),
        },
    };
    let zset = match read_zset(core, ctx, &argv[1]) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(zset)) => zset,
    };
    let resp = ctx.resp;
    let emit = |items: &mut dyn Iterator<Item = (&[u8], f64)>| {
        if with_scores {
            return scored(items.map(|(member, score)| (bulk(member), score)), resp);
        }
        Reply::Array(items.map(|(member, _)| bulk(member)).collect())
    };
    // A negative offset walks off the end in Redis's loop; a negative limit means no limit.
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    // Redis answers at once when a positive offset passes the end (score and lex only: a
    // rank range ignores `LIMIT 5 -1`, which got past the check above).
    if offset > 0 && skip >= zset.len() && !matches!(request, Request::Rank(..)) {
        return Reply::Array(Vec::new());
    }
    match request {
        Request::Rank(start, end) => match clamp_range(start, end, zset.len()) {
            None => Reply::Array(Vec::new()),
            Some((start, end)) => emit(&mut zset.range_by_rank(start, end, reverse).into_iter()),
        },
        Request::Score(range) => {
            emit(&mut zset.range_by_score(&range, reverse).skip(skip).take(take))
        }
        Request::Lex(range) => emit(&mut zset.range_by_lex(&range, reverse).skip(skip).take(take)),
    }
}

fn zrange(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    range_generic(core, ctx, argv, None, None)
}

fn zrevrange(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    range_generic(core, ctx, argv, Some(RangeKind::Rank), Some(true))
}

fn zrangebyscore(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    range_generic(core, ctx, argv, Some(RangeKind::Score), Some(false))
}

fn zrevrangebyscore(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    range_generic(core, ctx, argv, Some(RangeKind::Score), Some(true))
}

fn zrangebylex(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    range_generic(core, ctx, argv, Some(RangeKind::Lex), Some(false))
}

fn zrevrangebylex(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    range_generic(core, ctx, argv, Some(RangeKind::Lex), Some(true))
}

/// ZREMRANGEBY*: the range is parsed first, then the key looked up; the members found are
/// removed one by one (O(k log n)).
fn remove_range(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>], request: Request) -> Reply {
    let key = &argv[1];
    let zset = match write_zset(core, ctx, key) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Integer(0),
        Ok(Some(zset)) => zset,
    };
    let doomed: Vec<Vec<u8>> = match &request {
        Request::Rank(start, end) => match clamp_range(*start, *end, zset.len()) {
            None => Vec::new(),
            Some((start, end)) => zset
                .range_by_rank(start, end, false)
                .into_iter()
                .map(|(member, _)| member.to_vec())
                .collect(),
        },
        Request::Score(range) => zset
            .range_by_score(range, false)
            .map(|(member, _)| member.to_vec())
            .collect(),
        Request::Lex(range) => zset
            .range_by_lex(range, false)
            .map(|(member, _)| member.to_vec())
            .collect(),
    };
    for member in &doomed {
        zset.remove(member);
    }
    if !doomed.is_empty() {
        core.db(ctx).remove_if_empty(key);
        core.signal_modified(ctx.db, key);
    }
    int(doomed.len())
}

fn zremrangebyrank(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match (super::arg_i64(&argv[2]), super::arg_i64(&argv[3])) {
        (Ok(start), Ok(end)) => remove_range(core, ctx, argv, Request::Rank(start, end)),
        (Err(reply), _) | (_, Err(reply)) => reply,
    }
}

fn zremrangebyscore(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match ScoreRange::parse(&argv[2], &argv[3]) {
        Some(range) => remove_range(core, ctx, argv, Request::Score(range)),
        None => err(BAD_SCORE_RANGE),
    }
}

fn zremrangebylex(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    match LexRange::parse(&argv[2], &argv[3]) {
        Some(range) => remove_range(core, ctx, argv, Request::Lex(range)),
        None => err(BAD_LEX_RANGE),
    }
}

/// ZPOPMIN and ZPOPMAX: a flat member/score array in RESP2, with or without a count.
fn pop_generic(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>], highest: bool) -> Reply {
    if argv.len() > 3 {
        return err(msg::SYNTAX);
    }
    let count = match argv.get(2) {
        None => 1,
        Some(arg) => match non_negative(arg, msg::NOT_POSITIVE) {
            Ok(count) => count,
            Err(reply) => return reply,
        },
    };
    let key = &argv[1];
    let zset = match write_zset(core, ctx, key) {
        Err(reply) => return reply,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(zset)) => zset,
    };
    let mut popped = Vec::new();
    for _ in 0..count.min(zset.len()) {
        let (member, score) = zset.pop(highest).expect("below the length");
        popped.push((bulk(member), score));
    }
    if !popped.is_empty() {
        core.db(ctx).remove_if_empty(key);
        core.signal_modified(ctx.db, key);
    }
    // Without a count Redis 7.0 answers one flat pair even in RESP3.
    let resp = if argv.len() == 3 {
        ctx.resp
    } else {
        Protocol::Resp2
    };
    scored(popped.into_iter(), resp)
}

/// Members with their scores: `[member, score, ...]` in RESP2, `[[member, score], ...]` in
/// RESP3 (Redis 7.0's WITHSCORES and ZPOPMIN/ZPOPMAX with a count).
pub(crate) fn scored(items: impl Iterator<Item = (Reply, f64)>, resp: Protocol) -> Reply {
    match resp {
        Protocol::Resp2 => Reply::Array(
            items
                .flat_map(|(member, score)| [member, score_reply(score)])
                .collect(),
        ),
        Protocol::Resp3 => Reply::Array(
            items
                .map(|(member, score)| Reply::Array(vec![member, score_reply(score)]))
                .collect(),
        ),
    }
}

fn zpopmin(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    pop_generic(core, ctx, argv, false)
}

fn zpopmax(core: &mut Core, ctx: &mut Ctx, argv: &[Vec<u8>]) -> Reply {
    pop_generic(core, ctx, argv, true)
}

#[cfg(test)]
mod tests {
    use crate::model::Reply;
    use crate::model::testkit::*;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
    const NOT_FLOAT: &str = "ERR value is not a valid float";
    const SYNTAX: &str = "ERR syntax error";

    #[test]
    fn zadd_flags_and_errors() {
        check(&[
            ("ZADD z 1 a 2 b", int(2)),
            ("ZADD z 1 a 3 b 4 c", int(1)),
            ("ZADD z CH 1 a 5 b 4 c", int(1)),
            ("ZADD z NX 9 a 6 d", int(1)),
            ("ZSCORE z a", bulk("1")),
            ("ZADD z XX 9 a 7 e", int(0)),
            ("ZSCORE z a", bulk("9")),
            ("ZSCORE z e", Reply::Nil),
            ("ZADD z GT CH 8 a 10 b", int(1)),
            ("ZADD z LT CH 8 a 10 b", int(1)),
            ("ZADD z XX GT CH 20 a 20 new", int(1)),
            ("ZSCORE z new", Reply::Nil),
            ("ZADD z GT 1 fresh", int(1)),
            ("ZADD z INCR 2.5 a", bulk("22.5")),
            ("ZADD z INCR NX 1 a", Reply::Nil),
            ("ZADD z INCR XX 1 nosuch", Reply::Nil),
            ("ZADD z INCR GT -1 a", Reply::Nil),
            ("ZADD z INCR LT -1 a", bulk("21.5")),
            ("ZADD z INCR 0 a", bulk("21.5")),
            ("ZADD nosuch XX 1 a", int(0)),
            ("ZADD nosuch XX INCR 1 a", Reply::Nil),
            ("GONE nosuch", int(0)),
            (
                "ZADD z NX XX 1 a",
                error("ERR XX and NX options at the same time are not compatible"),
            ),
            (
                "ZADD z NX GT 1 a",
                error("ERR GT, LT, and/or NX options at the same time are not compatible"),
            ),
            (
                "ZADD z GT LT 1 a",
                error("ERR GT, LT, and/or NX options at the same time are not compatible"),
            ),
            (
                "ZADD z INCR 1 a 2 b",
                error("ERR INCR option supports a single increment-element pair"),
            ),
            ("ZADD z 1 a 2", error(SYNTAX)),
            ("ZADD z NX CH", error(SYNTAX)),
            ("ZADD z NX XX", error(SYNTAX)),
            ("ZADD z 1 a x b", error(NOT_FLOAT)),
            ("ZADD z nan a", error(NOT_FLOAT)),
            ("ZADD z 1e400 a", error(NOT_FLOAT)),
            ("ZADD z inf a", int(0)),
            (
                "ZADD z INCR -inf a",
                error("ERR resulting score is not a number (NaN)"),
            ),
            ("ZSCORE z a", bulk("inf")),
            (
                "ZADD z a",
                error("ERR wrong number of arguments for 'zadd' command"),
            ),
        ]);
    }

    #[test]
    fn zincrby_zrem_zcard_zscore() {
        check(&[
            ("ZINCRBY z 1.5 a", bulk("1.5")),
            ("ZINCRBY z 0.1 a", bulk("1.6000000000000001")),
            ("ZINCRBY z x a", error(NOT_FLOAT)),
            ("ZINCRBY z nx a", error(SYNTAX)),
            ("ZCARD z", int(1)),
            ("ZCARD nosuch", int(0)),
            (
                "ZMSCORE z a nosuch",
                Reply::Array(vec![bulk("1.6000000000000001"), Reply::Nil]),
            ),
            ("ZMSCORE nosuch a", Reply::Array(vec![Reply::Nil])),
            ("ZADD z -0 b", int(1)),
            ("ZSCORE z b", bulk("0")),
            ("ZINCRBY z -0 c", bulk("-0")),
            ("ZSCORE z c", bulk("0")),
            ("ZREM z c", int(1)),
            ("ZREM z a nosuch", int(1)),
            ("ZREM nosuch a", int(0)),
            ("ZREM z b", int(1)),
            ("GONE z", int(0)),
        ]);
    }

    #[test]
    fn wrong_type_is_refused_everywhere() {
        check(&[
            ("RPUSH l a", int(1)),
            ("ZADD l 1 a", error(WRONGTYPE)),
            ("ZADD l x a", error(NOT_FLOAT)),
            ("ZINCRBY l 1 a", error(WRONGTYPE)),
            ("ZREM l a", error(WRONGTYPE)),
            ("ZCARD l", error(WRONGTYPE)),
            ("ZSCORE l a", error(WRONGTYPE)),
            ("ZMSCORE l a", error(WRONGTYPE)),
            ("ZCOUNT l 0 1", error(WRONGTYPE)),
            ("ZCOUNT l x 1", error("ERR min or max is not a float")),
            ("ZLEXCOUNT l - +", error(WRONGTYPE)),
            ("ZRANK l a", error(WRONGTYPE)),
            ("ZREVRANK l a", error(WRONGTYPE)),
            ("ZRANGE l 0 1", error(WRONGTYPE)),
            ("ZRANGE l x 1", error(NOT_INTEGER)),
            ("ZREVRANGE l 0 1", error(WRONGTYPE)),
            ("ZRANGEBYSCORE l 0 1", error(WRONGTYPE)),
            ("ZREVRANGEBYSCORE l 1 0", error(WRONGTYPE)),
            ("ZRANGEBYLEX l - +", error(WRONGTYPE)),
            ("ZREMRANGEBYRANK l 0 1", error(WRONGTYPE)),
            ("ZREMRANGEBYSCORE l 0 1", error(WRONGTYPE)),
            ("ZREMRANGEBYLEX l - +", error(WRONGTYPE)),
        ]);
    }

    #[test]
    fn ranges_by_rank() {
        check(&[
            ("ZADD z 1 a 2 b 3 c 4 d", int(4)),
            ("ZRANGE z 0 -1", bulks(&["a", "b", "c", "d"])),
            ("ZRANGE z 1 2 WITHSCORES", bulks(&["b", "2", "c", "3"])),
            ("ZRANGE z -2 100", bulks(&["c", "d"])),
            ("ZRANGE z 3 1", bulks(&[])),
            ("ZRANGE z 0 0 REV", bulks(&["d"])),
            ("ZREVRANGE z 0 1 withscores", bulks(&["d", "4", "c", "3"])),
            ("ZREVRANGE z 1 1 REV", error(SYNTAX)),
            (
                "ZRANGE z 0 1 LIMIT 0 1",
                error(
                    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
                ),
            ),
            ("ZRANGE z 0 1 LIMIT 0 -1", bulks(&["a", "b"])),
            ("ZRANGE z 0 1 LIMIT 9 -1", bulks(&["a", "b"])),
            ("ZRANGE z 0 1 LIMIT 0", error(SYNTAX)),
            ("ZRANGE z 0 1 LIMIT x 1", error(NOT_INTEGER)),
            ("ZRANGE z 0 1 REV REV", error(SYNTAX)),
            ("ZRANGE nosuch 0 -1", bulks(&[])),
            ("ZRANK z c", int(2)),
            ("ZREVRANK z c", int(1)),
            ("ZRANK z nosuch", Reply::Nil),
            ("ZRANK nosuch a", Reply::Nil),
        ]);
    }

    #[test]
    fn ranges_by_score() {
        check(&[
            ("ZADD z 1 a 2 b 3 c 4 d -inf lo +inf hi", int(6)),
            ("ZRANGEBYSCORE z 2 3", bulks(&["b", "c"])),
            ("ZRANGEBYSCORE z (2 (4", bulks(&["c"])),
            (
                "ZRANGEBYSCORE z -inf +inf",
                bulks(&["lo", "a", "b", "c", "d", "hi"]),
            ),
            ("ZRANGEBYSCORE z (-inf (+inf", bulks(&["a", "b", "c", "d"])),
            ("ZRANGEBYSCORE z (inf +inf", bulks(&[])),
            ("ZRANGEBYSCORE z 3 2", bulks(&[])),
            ("ZRANGEBYSCORE z (2 2", bulks(&[])),
            (
                "ZRANGEBYSCORE z 1 4 WITHSCORES LIMIT 1 2",
                bulks(&["b", "2", "c", "3"]),
            ),
            ("ZRANGEBYSCORE z 1 4 LIMIT 1 -5", bulks(&["b", "c", "d"])),
            ("ZRANGEBYSCORE z 1 4 LIMIT -1 2", bulks(&[])),
            ("ZRANGEBYSCORE z 1 4 LIMIT 0 0", bulks(&[])),
            ("ZRANGEBYSCORE z 1 4 LIMIT 9 1", bulks(&[])),
            ("ZREVRANGEBYSCORE z 4 2", bulks(&["d", "c", "b"])),
            ("ZREVRANGEBYSCORE z (4 -inf LIMIT 1 1", bulks(&["b"])),
            ("ZRANGE z (4 1 BYSCORE REV", bulks(&["c", "b", "a"])),
            (
                "ZRANGE z 1 4 BYSCORE LIMIT 1 1 WITHSCORES",
                bulks(&["b", "2"]),
            ),
            (
                "ZRANGEBYSCORE z x 1",
                error("ERR min or max is not a float"),
            ),
            ("ZRANGEBYSCORE z ( 1", bulks(&["a"])),
            ("ZRANGEBYSCORE z 1 (", bulks(&[])),
            (
                "ZRANGEBYSCORE z 1 nan",
                error("ERR min or max is not a float"),
            ),
            ("ZRANGEBYSCORE z 0 1 BYSCORE", error(SYNTAX)),
            ("ZCOUNT z (1 4", int(3)),
            ("ZCOUNT z -inf +inf", int(6)),
            ("ZCOUNT nosuch 0 1", int(0)),
            ("ZCOUNT z 0 x", error("ERR min or max is not a float")),
        ]);
    }

    #[test]
    fn ranges_by_lex() {
        check(&[
            ("ZADD z 0 a 0 b 0 c 0 d", int(4)),
            ("ZRANGEBYLEX z - +", bulks(&["a", "b", "c", "d"])),
            ("ZRANGEBYLEX z [b (d", bulks(&["b", "c"])),
            ("ZRANGEBYLEX z (a [c LIMIT 1 5", bulks(&["c"])),
            ("ZREVRANGEBYLEX z + (b", bulks(&["d", "c"])),
            ("ZRANGE z [c - BYLEX REV", bulks(&["c", "b", "a"])),
            ("ZRANGEBYLEX z + -", bulks(&[])),
            ("ZRANGEBYLEX z - -", bulks(&[])),
            (
                "ZRANGEBYLEX z b d",
                error("ERR min or max not valid string range item"),
            ),
            (
                "ZRANGE z - + BYLEX WITHSCORES",
                error("ERR syntax error, WITHSCORES not supported in combination with BYLEX"),
            ),
            ("ZLEXCOUNT z [b +", int(3)),
            ("ZREMRANGEBYLEX z [b (d", int(2)),
            ("ZRANGE z 0 -1", bulks(&["a", "d"])),
            (
                "ZREMRANGEBYLEX z x +",
                error("ERR min or max not valid string range item"),
            ),
            ("ZREMRANGEBYLEX z - +", int(2)),
            ("GONE z", int(0)),
        ]);
    }

    #[test]
    fn remove_ranges() {
        check(&[
            ("ZADD z 1 a 2 b 3 c 4 d 5 e", int(5)),
            ("ZREMRANGEBYSCORE z (1 2", int(1)),
            ("ZREMRANGEBYSCORE z 10 20", int(0)),
            (
                "ZREMRANGEBYSCORE z x 1",
                error("ERR min or max is not a float"),
            ),
            ("ZREMRANGEBYSCORE nosuch 0 1", int(0)),
            ("ZREMRANGEBYRANK z -1 -1", int(1)),
            ("ZRANGE z 0 -1", bulks(&["a", "c", "d"])),
            ("ZREMRANGEBYRANK z 5 10", int(0)),
            ("ZREMRANGEBYRANK z x 1", error(NOT_INTEGER)),
            ("ZREMRANGEBYRANK nosuch 0 1", int(0)),
            ("ZREMRANGEBYRANK z 0 -1", int(3)),
            ("GONE z", int(0)),
        ]);
    }

    #[test]
    fn zadd_and_removal_keep_the_ttl() {
        let mut model = check(&[("ZADD z 1 a 2 b", int(2))]);
        model.core.dbs[0].set_expire(b"z", Some(50_000));
        let mut session = model.connect("127.0.0.1:2");
        for line in [
            "ZADD z 3 c",
            "ZINCRBY z 1 a",
            "ZREM z b",
            "ZREMRANGEBYSCORE z 0 1",
        ] {
            let argv: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
            model.exec(1_000, &mut session, &argv);
        }
        let entry = model.core.dbs[0].peek(b"z").expect("still there");
        assert_eq!(entry.expire_at_ms, Some(50_000));
    }

    #[test]
    fn pops_from_both_ends() {
        check(&[
            ("ZPOPMIN nosuch", bulks(&[])),
            (
                "ZPOPMIN nosuch x",
                error("ERR value is out of range, must be positive"),
            ),
            ("ZADD z 1 a 2 b 3 c", int(3)),
            ("ZPOPMIN z", bulks(&["a", "1"])),
            ("ZPOPMAX z 0", bulks(&[])),
            (
                "ZPOPMAX z -1",
                error("ERR value is out of range, must be positive"),
            ),
            ("ZPOPMAX z 1 2", error(SYNTAX)),
            ("ZPOPMAX z 5", bulks(&["c", "3", "b", "2"])),
            ("GONE z", int(0)),
            ("RPUSH l a", int(1)),
            ("ZPOPMIN l", error(WRONGTYPE)),
        ]);
    }

    #[test]
    fn negative_zero_survives_only_in_large_sets() {
        let long = "m".repeat(65);
        check(&[
            (&format!("ZADD z -0 {long}"), int(1)),
            (&format!("ZSCORE z {long}"), bulk("-0")),
            ("ZADD z -0 short", int(1)),
            ("ZSCORE z short", bulk("0")),
        ]);
    }

    #[test]
    fn a_large_sliding_log_answers_from_both_ends() {
        let mut model = check(&[]);
        let mut session = model.connect("127.0.0.1:2");
        let mut exec = |line: String| {
            let argv: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
            model.exec(1_000, &mut session, &argv)
        };
        for at in 0..5_000 {
            exec(format!("ZADD log {at} m{at}"));
        }
        assert_eq!(
            exec("ZRANGE log 0 0 WITHSCORES".into()),
            bulks(&["m0", "0"])
        );
        assert_eq!(exec("ZRANGE log -1 -1".into()), bulks(&["m4999"]));
        assert_eq!(exec("ZREMRANGEBYSCORE log -inf (4000".into()), int(4000));
        assert_eq!(exec("ZCARD log".into()), int(1000));
        assert_eq!(exec("ZCOUNT log 4990 +inf".into()), int(10));
        assert_eq!(exec("ZRANK log m4500".into()), int(500));
        assert_eq!(exec("ZREVRANGE log 1 2".into()), bulks(&["m4998", "m4997"]));
    }
}
