//! The sorted set: members ordered by (score, member bytes), as Redis orders them.
//!
//! Two indexes: member to score (ZSCORE, ZADD's lookups) and a `BTreeSet` of (score, member)
//! for everything ordered. Score ranges are `BTreeSet` ranges, so ZRANGEBYSCORE and
//! ZREMRANGEBYSCORE cost O(log n + k) on a sliding log of thousands of entries; rank-based
//! access walks from whichever end is nearer. Range bounds are parsed here, with Redis's
//! rules, so that every command reads them alike.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::num;

/// One entry of the ordered index: (score, member).
type Ordered = (Score, Vec<u8>);

/// A score with a total order (`f64::total_cmp`); NaN never gets in (commands reject it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Redis compares scores as doubles, so -0 and +0 are equal; fold them first.
        let left = if self.0 == 0.0 { 0.0 } else { self.0 };
        let right = if other.0 == 0.0 { 0.0 } else { other.0 };
        left.total_cmp(&right)
    }
}

/// A sorted set: a score per member, and the members in (score, member) order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZSet {
    /// Member to score.
    scores: BTreeMap<Vec<u8>, Score>,
    /// The order ZRANGE walks.
    ordered: BTreeSet<(Score, Vec<u8>)>,
}

impl ZSet {
    /// Number of members.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The score of `member`, if present.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).map(|score| score.0)
    }

    /// Sets `member` to `score`. Returns true if the member is new.
    pub fn insert(&mut self, member: Vec<u8>, score: f64) -> bool {
        let is_new = match self.scores.insert(member.clone(), Score(score)) {
            Some(old) => {
                self.ordered.remove(&(old, member.clone()));
                false
            }
            None => true,
        };
        self.ordered.insert((Score(score), member));
        is_new
    }

    /// Removes `member`. Returns true if it was present.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.scores.remove(member) {
            Some(old) => {
                self.ordered.remove(&(old, member.to_vec()));
                true
            }
            None => false,
        }
    }

    /// Members in ascending (score, member) order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.ordered
            .iter()
            .map(|(score, member)| (member.as_slice(), score.0))
    }

    /// Removes and returns the lowest member, or the highest when `highest`.
    pub fn pop(&mut self, highest: bool) -> Option<(Vec<u8>, f64)> {
        let (score, member) = if highest {
            self.ordered.pop_last()?
        } else {
            self.ordered.pop_first()?
        };
        self.scores.remove(&member);
        Some((member, score.0))
    }

    /// The 0-based position of `member` in ascending order, if present. O(rank).
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = *self.scores.get(member)?;
        Some(self.ordered.range(..(score, member.to_vec())).count())
    }

    /// The members at ascending positions `start..=end` (both below `len`, `start <= end`),
    /// in ascending order, or descending positions counted from the top when `reverse`.
    /// Walks from the nearer end, so the first and last few members are cheap to reach.
    pub fn range_by_rank(&self, start: usize, end: usize, reverse: bool) -> Vec<(&[u8], f64)> {
        let len = self.len();
        if start > end || end >= len {
            return Vec::new();
        }
        let count = end - start + 1;
        let (low, high) = if reverse {
            (len - 1 - end, len - 1 - start)
        } else {
            (start, end)
        };
        let mut items: Vec<(&[u8], f64)> = if low <= len - 1 - high {
            self.iter().skip(low).take(count).collect()
        } else {
            let mut items: Vec<_> = self.iter().rev().skip(len - 1 - high).take(count).collect();
            items.reverse();
            items
        };
        if reverse {
            items.reverse();
        }
        items
    }

    /// The members whose score lies in `range`, ascending, or descending when `reverse`.
    /// O(log n) to find the first, then one step per member.
    pub fn range_by_score<'a>(
        &'a self,
        range: &ScoreRange,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        let Some((low, high)) = range.btree_bounds() else {
            return Box::new(std::iter::empty());
        };
        let found = self
            .ordered
            .range((low, high))
            .map(|(score, member)| (member.as_slice(), score.0));
        if reverse {
            Box::new(found.rev())
        } else {
            Box::new(found)
        }
    }

    /// The members in the lexicographic `range`, ascending, or descending when `reverse`.
    /// Meaningful when every score is equal (Redis's contract for BYLEX). Like a small Redis
    /// sorted set, it walks in order to the first member inside the near bound and stops at
    /// the first one past the far bound.
    pub fn range_by_lex<'a>(
        &'a self,
        range: &'a LexRange,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        if range.is_empty() {
            return Box::new(std::iter::empty());
        }
        if reverse {
            Box::new(
                self.iter()
                    .rev()
                    .skip_while(|(member, _)| !range.max.admits_below(member))
                    .take_while(|(member, _)| range.min.admits_above(member)),
            )
        } else {
            Box::new(
                self.iter()
                    .skip_while(|(member, _)| !range.min.admits_above(member))
                    .take_while(|(member, _)| range.max.admits_below(member)),
            )
        }
    }
}

/// A score interval as ZRANGEBYSCORE takes it: `(` before a bound makes it exclusive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreRange {
    /// The low bound.
    pub min: f64,
    /// Whether `min` itself is excluded.
    pub min_exclusive: bool,
    /// The high bound.
    pub max: f64,
    /// Whether `max` itself is excluded.
    pub max_exclusive: bool,
}

impl ScoreRange {
    /// Parses `min` and `max` as Redis's zslParseRange does: an optional `(`, then C's
    /// `strtod` over the rest, which must be consumed entirely and must not be NaN. As with
    /// `strtod`, leading whitespace is skipped and an empty string reads as 0.
    pub fn parse(min: &[u8], max: &[u8]) -> Option<ScoreRange> {
        let (min, min_exclusive) = parse_score_bound(min)?;
        let (max, max_exclusive) = parse_score_bound(max)?;
        Some(ScoreRange {
            min,
            min_exclusive,
            max,
            max_exclusive,
        })
    }

    /// Whether `score` is at or above the low bound.
    pub fn above_min(&self, score: f64) -> bool {
        if self.min_exclusive {
            score > self.min
        } else {
            score >= self.min
        }
    }

    /// Whether `score` is at or below the high bound.
    pub fn below_max(&self, score: f64) -> bool {
        if self.max_exclusive {
            score < self.max
        } else {
            score <= self.max
        }
    }

    /// The range as bounds over the ordered (score, member) set, or `None` if it is empty.
    /// An empty member sorts before every other member of its score, so `(s, [])` is the
    /// first possible entry with score `s`; exclusive bounds move to the next double.
    fn btree_bounds(&self) -> Option<(Bound<Ordered>, Bound<Ordered>)> {
        let low = if self.min_exclusive {
            if self.min == f64::INFINITY {
                return None;
            }
            self.min.next_up()
        } else {
            self.min
        };
        let high = if self.max_exclusive {
            Some(self.max)
        } else if self.max == f64::INFINITY {
            None
        } else {
            Some(self.max.next_up())
        };
        let upper = match high {
            None => Bound::Unbounded,
            Some(high) => {
                if Score(high) < Score(low) {
                    return None;
                }
                Bound::Excluded((Score(high), Vec::new()))
            }
        };
        Some((Bound::Included((Score(low), Vec::new())), upper))
    }
}

/// One bound of a score range: the value and whether it is exclusive.
fn parse_score_bound(text: &[u8]) -> Option<(f64, bool)> {
    let (text, exclusive) = match text.split_first() {
        Some((b'(', rest)) => (rest, true),
        _ => (text, false),
    };
    // strtod stops at a NUL byte, which Redis then takes for the end of the string.
    let text = text.split(|&byte| byte == 0).next().unwrap_or(b"");
    let start = text
        .iter()
        .position(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(text.len());
    let text = &text[start..];
    if text.is_empty() {
        return if start == 0 {
            Some((0.0, exclusive))
        } else {
            None
        };
    }
    num::parse_f64(text).map(|value| (value, exclusive))
}

/// One end of a lexicographic range (`-`, `+`, `[member` or `(member`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LexBound {
    /// `-`: below every member.
    Lowest,
    /// `+`: above every member.
    Highest,
    /// `[member`: the member itself is in range.
    Inclusive(Vec<u8>),
    /// `(member`: the member itself is not.
    Exclusive(Vec<u8>),
}

impl LexBound {
    /// Parses one bound as Redis's zslParseLexRangeItem does.
    pub fn parse(text: &[u8]) -> Option<LexBound> {
        match text.split_first()? {
            (b'+', []) => Some(LexBound::Highest),
            (b'-', []) => Some(LexBound::Lowest),
            (b'[', rest) => Some(LexBound::Inclusive(rest.to_vec())),
            (b'(', rest) => Some(LexBound::Exclusive(rest.to_vec())),
            _ => None,
        }
    }

    /// Whether `member` is at or above this bound used as a minimum.
    pub fn admits_above(&self, member: &[u8]) -> bool {
        match self {
            LexBound::Lowest => true,
            LexBound::Highest => false,
            LexBound::Inclusive(bound) => member >= bound.as_slice(),
            LexBound::Exclusive(bound) => member > bound.as_slice(),
        }
    }

    /// Whether `member` is at or below this bound used as a maximum.
    pub fn admits_below(&self, member: &[u8]) -> bool {
        match self {
            LexBound::Lowest => false,
            LexBound::Highest => true,
            LexBound::Inclusive(bound) => member <= bound.as_slice(),
            LexBound::Exclusive(bound) => member < bound.as_slice(),
        }
    }
}

/// A lexicographic range as ZRANGEBYLEX takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexRange {
    /// The low bound.
    pub min: LexBound,
    /// The high bound.
    pub max: LexBound,
}

impl LexRange {
    /// Parses both bounds; `None` is Redis's "min or max not valid string range item".
    pub fn parse(min: &[u8], max: &[u8]) -> Option<LexRange> {
        Some(LexRange {
            min: LexBound::parse(min)?,
            max: LexBound::parse(max)?,
        })
    }

    /// Whether no member can be in range (min above max, or equal with an open end), as
    /// Redis's zslIsInLexRange decides before it looks at any member.
    fn is_empty(&self) -> bool {
        use LexBound::{Exclusive, Highest, Inclusive, Lowest};
        let (min, min_open) = match &self.min {
            Lowest => return matches!(self.max, Lowest),
            Highest => return true,
            Inclusive(bound) => (bound, false),
            Exclusive(bound) => (bound, true),
        };
        let (max, max_open) = match &self.max {
            Lowest => return true,
            Highest => return false,
            Inclusive(bound) => (bound, false),
            Exclusive(bound) => (bound, true),
        };
        min > max || (min == max && (min_open || max_open))
    }
}
