//! The sorted set: members ordered by (score, member bytes), as Redis orders them.

use std::collections::{BTreeMap, BTreeSet};

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
}
