//! Where keys land and how load spreads: a slot map (which node owns which slots) and the
//! keys and commands per slot and per node over some traffic.
//!
//! Nothing here reads a live cluster: the slot map is Redis's default assignment for N
//! masters or one given by hand, so a key scheme can be judged before it ships.

use std::collections::{BTreeMap, HashSet};

use super::{SLOT_COUNT, key_slot};

/// Which node owns each slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    /// Inclusive ranges with their node, sorted, covering every slot once.
    ranges: Vec<(u16, u16, u32)>,
    nodes: u32,
}

impl SlotMap {
    /// One node owns everything (standalone Redis).
    pub fn standalone() -> SlotMap {
        SlotMap {
            ranges: vec![(0, SLOT_COUNT - 1, 0)],
            nodes: 1,
        }
    }

    /// The ranges `redis-cli --cluster create` assigns to `masters` masters: 16384 / N slots
    /// each (a fraction), every boundary rounded to the nearest slot, the last master taking
    /// the rest (three masters: 0-5460, 5461-10922, 10923-16383).
    pub fn redis_default(masters: u32) -> Result<SlotMap, String> {
        if masters == 0 || masters > u32::from(SLOT_COUNT) {
            return Err(format!("masters must be in 1..=16384 (got {masters})"));
        }
        let per_node = f64::from(SLOT_COUNT) / f64::from(masters);
        let mut ranges = Vec::new();
        let mut first = 0u32;
        let mut cursor = 0.0f64;
        for node in 0..masters {
            let mut last = (cursor + per_node - 1.0).round() as u32;
            if last >= u32::from(SLOT_COUNT) || node == masters - 1 {
                last = u32::from(SLOT_COUNT) - 1;
            }
            last = last.max(first);
            ranges.push((
                u16::try_from(first).expect("below the slot count"),
                u16::try_from(last).expect("below the slot count"),
                node,
            ));
            first = last + 1;
            cursor += per_node;
        }
        Ok(SlotMap {
            ranges,
            nodes: masters,
        })
    }

    /// A given map: `(first, last, node)` ranges that together cover every slot exactly once.
    pub fn from_ranges(mut ranges: Vec<(u16, u16, u32)>) -> Result<SlotMap, String> {
        ranges.sort_unstable();
        let mut next = 0u32;
        for &(first, last, _) in &ranges {
            if first > last {
                return Err(format!("range {first}-{last} runs backwards"));
            }
            if u32::from(first) != next {
                return Err(if u32::from(first) < next {
                    format!("slot {first} is assigned twice")
                } else {
                    format!("slots {next}-{} are assigned to no node", first - 1)
                });
            }
            next = u32::from(last) + 1;
        }
        if next != u32::from(SLOT_COUNT) {
            return Err(format!("slots {next}-16383 are assigned to no node"));
        }
        let nodes = ranges
            .iter()
            .map(|&(_, _, node)| node + 1)
            .max()
            .unwrap_or(1);
        Ok(SlotMap { ranges, nodes })
    }

    /// Number of nodes (the highest node index plus one).
    pub fn nodes(&self) -> u32 {
        self.nodes
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[(u16, u16, u32)] {
        &self.ranges
    }

    /// The node that owns `slot`.
    pub fn node_of(&self, slot: u16) -> u32 {
        let index = self.ranges.partition_point(|&(_, last, _)| last < slot);
        self.ranges[index.min(self.ranges.len() - 1)].2
    }
}

/// Keys and commands per slot, counted as traffic is replayed.
#[derive(Clone, Debug)]
pub struct Spread {
    map: SlotMap,
    /// Per used slot: (distinct keys, commands).
    slots: BTreeMap<u16, (u64, u64)>,
    /// Every key seen (only probed, never iterated).
    seen: HashSet<Vec<u8>>,
}

/// The hot slots of a spread: slots with more than four times the median used slot's
/// commands (the median, not the mean, so that a few very hot slots do not hide each other).
#[derive(Clone, Debug, PartialEq)]
pub struct HotSlots {
    /// How many slots are hot.
    pub count: u64,
    /// The longest run of neighbouring hot slots, (first, last): one slot when the heat is a
    /// single key (or tag); a run when nearby slots are all hot, which a resharding that
    /// moves slot ranges moves together.
    pub longest_run: Option<(u16, u16)>,
    /// The run's share of all commands.
    pub longest_run_share: f64,
}

/// A spread's headline numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct SpreadSummary {
    /// Distinct keys.
    pub keys: u64,
    /// Commands (one per key a decision touches).
    pub commands: u64,
    /// Slots with at least one command.
    pub slots_used: u64,
    /// The hottest slot and its share of commands.
    pub hottest_slot: Option<(u16, f64)>,
    /// The hottest node and its share of commands.
    pub hottest_node: Option<(u32, f64)>,
    /// The hottest node's commands over the mean per node (1.0 is perfectly even).
    pub node_max_over_mean: f64,
    /// Per node: (keys, commands).
    pub per_node: Vec<(u64, u64)>,
    /// Hot slots and how they cluster.
    pub hot: HotSlots,
}

impl Spread {
    /// An empty spread over `map`.
    pub fn new(map: SlotMap) -> Spread {
        Spread {
            map,
            slots: BTreeMap::new(),
            seen: HashSet::new(),
        }
    }

    /// Counts one command on `key`.
    pub fn touch(&mut self, key: &[u8]) {
        let entry = self.slots.entry(key_slot(key)).or_insert((0, 0));
        entry.1 += 1;
        if !self.seen.contains(key) {
            self.seen.insert(key.to_vec());
            entry.0 += 1;
        }
    }

    /// The `count` busiest slots as (slot, keys, commands), busiest first (ties: lower slot).
    pub fn top_slots(&self, count: usize) -> Vec<(u16, u64, u64)> {
        let mut slots: Vec<(u16, u64, u64)> = self
            .slots
            .iter()
            .map(|(&slot, &(keys, commands))| (slot, keys, commands))
            .collect();
        slots.sort_by_key(|&(slot, _, commands)| (std::cmp::Reverse(commands), slot));
        slots.truncate(count);
        slots
    }

    /// The headline numbers.
    pub fn summary(&self) -> SpreadSummary {
        let commands: u64 = self.slots.values().map(|&(_, commands)| commands).sum();
        let share = |count: u64| {
            if commands == 0 {
                0.0
            } else {
                count as f64 / commands as f64
            }
        };
        let mut per_node = vec![(0u64, 0u64); usize::try_from(self.map.nodes).expect("fits")];
        for (&slot, &(keys, count)) in &self.slots {
            let node = &mut per_node[usize::try_from(self.map.node_of(slot)).expect("fits")];
            node.0 += keys;
            node.1 += count;
        }
        let hottest_slot = self
            .slots
            .iter()
            .max_by_key(|&(&slot, &(_, count))| (count, std::cmp::Reverse(slot)))
            .map(|(&slot, &(_, count))| (slot, share(count)));
        let hottest_node = (0..self.map.nodes)
            .zip(&per_node)
            .max_by_key(|&(node, &(_, count))| (count, std::cmp::Reverse(node)))
            .map(|(node, &(_, count))| (node, share(count)));
        let node_max = per_node.iter().map(|&(_, count)| count).max().unwrap_or(0);
        let node_mean = commands as f64 / f64::from(self.map.nodes);
        SpreadSummary {
            keys: self.seen.len() as u64,
            commands,
            slots_used: self.slots.len() as u64,
            hottest_slot,
            hottest_node,
            node_max_over_mean: if commands == 0 {
                0.0
            } else {
                node_max as f64 / node_mean
            },
            per_node,
            hot: self.hot_slots(commands),
        }
    }

    fn hot_slots(&self, commands: u64) -> HotSlots {
        let mut counts: Vec<u64> = self.slots.values().map(|&(_, count)| count).collect();
        counts.sort_unstable();
        let median = counts
            .get((counts.len().max(1) - 1) / 2)
            .copied()
            .unwrap_or(0);
        let mut count = 0;
        let mut best: Option<(u16, u16, u64)> = None;
        let mut run: Option<(u16, u16, u64)> = None;
        for (&slot, &(_, slot_commands)) in &self.slots {
            if slot_commands <= median.saturating_mul(4) {
                run = None;
                continue;
            }
            count += 1;
            run = match run {
                Some((first, last, sum)) if u32::from(last) + 1 == u32::from(slot) => {
                    Some((first, slot, sum + slot_commands))
                }
                _ => Some((slot, slot, slot_commands)),
            };
            let current = run.expect("just set");
            let longer = best.is_none_or(|(first, last, sum)| {
                (current.1 - current.0, current.2) > (last - first, sum)
            });
            if longer {
                best = Some(current);
            }
        }
        HotSlots {
            count,
            longest_run: best.map(|(first, last, _)| (first, last)),
            longest_run_share: best.map_or(0.0, |(_, _, sum)| {
                if commands == 0 {
                    0.0
                } else {
                    sum as f64 / commands as f64
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_slot_ranges_are_the_ones_redis_cli_assigns() {
        // Goal: the default map is Redis's (create-cluster with 3 masters gives 0-5460,
        // 5461-10922, 10923-16383). Method: compare, and check any N covers every slot once.
        let three = SlotMap::redis_default(3).unwrap();
        assert_eq!(
            three.ranges(),
            &[(0, 5460, 0), (5461, 10922, 1), (10923, 16383, 2)]
        );
        for masters in [1, 2, 5, 7, 16, 100] {
            let map = SlotMap::redis_default(masters).unwrap();
            assert_eq!(SlotMap::from_ranges(map.ranges().to_vec()).unwrap(), map);
            assert_eq!(map.node_of(16383), masters - 1);
            assert_eq!(map.node_of(0), 0);
        }
        assert!(SlotMap::redis_default(0).is_err());
        assert!(SlotMap::from_ranges(vec![(0, 100, 0), (100, 16383, 1)]).is_err());
        assert!(SlotMap::from_ranges(vec![(0, 100, 0), (102, 16383, 1)]).is_err());
        assert!(SlotMap::from_ranges(vec![(0, 100, 0)]).is_err());
    }

    #[test]
    fn one_hot_key_and_a_run_of_hot_neighbours_are_told_apart() {
        // Goal: the summary says where the heat is. Method: 20 keys with one taking 80% of the
        // commands (one hot slot), then the same with keys chosen on neighbouring slots.
        let mut single = Spread::new(SlotMap::redis_default(3).unwrap());
        for _ in 0..100 {
            for key in 0..20 {
                let times = if key == 0 { 80 } else { 1 };
                for _ in 0..times {
                    single.touch(format!("k{key}").as_bytes());
                }
            }
        }
        let summary = single.summary();
        assert_eq!(summary.keys, 20);
        assert_eq!(summary.hot.count, 1);
        let (slot, share) = summary.hottest_slot.unwrap();
        assert_eq!(slot, key_slot(b"k0"));
        assert!((share - 80.0 / 99.0).abs() < 1e-9);
        assert_eq!(summary.hot.longest_run, Some((slot, slot)));
        let top = single.top_slots(2);
        assert_eq!(top[0], (slot, 1, 8000));
        assert_eq!(top[1].2, 100);
        // Keys on slots 100, 101, 102 hot; others cold.
        let mut by_slot: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        let mut index = 0u64;
        while by_slot.len() < 16384
            && [100u16, 101, 102, 5000, 9000, 12000]
                .iter()
                .any(|slot| !by_slot.contains_key(slot))
        {
            let key = format!("n{index}").into_bytes();
            by_slot.entry(key_slot(&key)).or_insert(key);
            index += 1;
        }
        let mut run = Spread::new(SlotMap::redis_default(3).unwrap());
        for (slot, times) in [
            (100u16, 50),
            (101, 50),
            (102, 50),
            (5000, 1),
            (9000, 1),
            (12000, 1),
        ] {
            for _ in 0..times {
                run.touch(&by_slot[&slot]);
            }
        }
        let summary = run.summary();
        assert_eq!(summary.hot.longest_run, Some((100, 102)));
        assert_eq!(summary.hottest_node.unwrap().0, 0);
        assert!(summary.node_max_over_mean > 2.9);
    }
}
