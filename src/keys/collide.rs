//! Namespace collisions found from the templates alone: two different (limit, identity) pairs
//! that render to one key.
//!
//! A template with its field alphabets is a regular language: literal bytes, and for each
//! field one or more bytes of the field's alphabet. Two limits collide when their languages
//! intersect (a missing or shared namespace: `rateLimit:$user` against `rateLimit:GA$ip` when
//! a user id may start with `GA`); one limit collides with itself when a key parses two ways
//! (a separator a field may contain: Envoy's `a_b` against `a` + `b`). Both questions are a
//! walk over the product of two small automata, which also yields the shortest witness key,
//! so a finding is shown, never only asserted.

use std::collections::VecDeque;

use super::{KeyScheme, Part};

/// The bytes a field's values may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alphabet([bool; 256]);

impl Alphabet {
    /// Parses `0-9a-f.:`: single bytes and `x-y` ranges (a `-` first or last is literal);
    /// `printable` is every byte from `!` to `~`.
    pub fn parse(spec: &str) -> Result<Alphabet, String> {
        if spec == "printable" {
            return Ok(Alphabet::range(b'!', b'~'));
        }
        let bytes = spec.as_bytes();
        if bytes.is_empty() {
            return Err("an alphabet needs at least one byte".to_owned());
        }
        let mut set = [false; 256];
        let mut index = 0;
        while index < bytes.len() {
            if index + 2 < bytes.len() && bytes[index + 1] == b'-' {
                let (low, high) = (bytes[index], bytes[index + 2]);
                if low > high {
                    return Err(format!(
                        "range {}-{} runs backwards",
                        char::from(low),
                        char::from(high)
                    ));
                }
                for byte in low..=high {
                    set[usize::from(byte)] = true;
                }
                index += 3;
            } else {
                set[usize::from(bytes[index])] = true;
                index += 1;
            }
        }
        Ok(Alphabet(set))
    }

    fn range(low: u8, high: u8) -> Alphabet {
        let mut set = [false; 256];
        for byte in low..=high {
            set[usize::from(byte)] = true;
        }
        Alphabet(set)
    }

    /// What a field of this name holds when a scheme file does not say: `ip` IPv4 or IPv6
    /// (`0-9a-fA-F.:`), `shard` digits, `user` and `group` `0-9A-Za-z_.-`, anything else
    /// (`model`, `email`...) every printable byte (model names hold `:` and `-`).
    pub fn default_for(field: &str) -> Alphabet {
        let spec = match field {
            "ip" => "0-9a-fA-F.:",
            "shard" => "0-9",
            "user" | "group" => "0-9A-Za-z_.-",
            _ => "printable",
        };
        Alphabet::parse(spec).expect("the defaults parse")
    }

    /// Whether `byte` may appear in a value.
    pub fn contains(&self, byte: u8) -> bool {
        self.0[usize::from(byte)]
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Atom {
    Byte(u8),
    Field(Box<Alphabet>),
}

/// A template as a language: literal bytes and one-or-more-byte fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    atoms: Vec<Atom>,
}

/// Bytes tried in this order, so that witnesses read as keys (`rl:a:0`, not `rl:\x00`).
fn byte_order() -> Vec<u8> {
    let mut order: Vec<u8> = (b'0'..=b'9')
        .chain(b'a'..=b'z')
        .chain(b'A'..=b'Z')
        .collect();
    order.extend((0u8..=255).filter(|byte| !byte.is_ascii_alphanumeric()));
    order
}

impl Pattern {
    /// The language of `scheme`'s keys: `constants` are fields fixed per limit (its `ns`),
    /// rendered as literals; every other field takes `alphabet(name)`.
    pub fn of(
        scheme: &KeyScheme,
        constants: &[(&str, &[u8])],
        alphabet: &dyn Fn(&str) -> Alphabet,
    ) -> Pattern {
        let mut atoms = Vec::new();
        for part in scheme.parts() {
            match part {
                Part::Literal(bytes) => atoms.extend(bytes.iter().map(|&byte| Atom::Byte(byte))),
                Part::Field(name) => match constants.iter().find(|(field, _)| field == name) {
                    Some((_, value)) => atoms.extend(value.iter().map(|&byte| Atom::Byte(byte))),
                    None => atoms.push(Atom::Field(Box::new(alphabet(name)))),
                },
            }
        }
        Pattern { atoms }
    }

    /// States reachable from `state` on `byte`. State k: the first k atoms are read.
    fn step(&self, state: usize, byte: u8) -> [Option<usize>; 2] {
        let mut next = [None, None];
        if let Some(atom) = self.atoms.get(state) {
            let takes = match atom {
                Atom::Byte(expected) => *expected == byte,
                Atom::Field(alphabet) => alphabet.contains(byte),
            };
            if takes {
                next[0] = Some(state + 1);
            }
        }
        // Still inside the field just read: it may take more bytes.
        if state > 0
            && let Atom::Field(alphabet) = &self.atoms[state - 1]
            && alphabet.contains(byte)
        {
            next[1] = Some(state);
        }
        next
    }

    /// The shortest key both patterns produce, if any: a collision between two limits.
    pub fn overlap(&self, other: &Pattern) -> Option<Vec<u8>> {
        product_walk(self, other, false)
    }

    /// The shortest key this pattern produces by two different readings (different field
    /// values), if any: a collision inside one limit.
    pub fn ambiguity(&self) -> Option<Vec<u8>> {
        product_walk(self, self, true)
    }
}

/// Breadth-first walk over pairs of states (and, for ambiguity, whether the two readings have
/// parted); returns the bytes that reach both accepting states.
fn product_walk(a: &Pattern, b: &Pattern, need_parted: bool) -> Option<Vec<u8>> {
    type Node = (usize, usize, bool);
    let (end_a, end_b) = (a.atoms.len(), b.atoms.len());
    let width_b = end_b + 1;
    let index =
        |(state_a, state_b, parted): Node| (state_a * width_b + state_b) * 2 + usize::from(parted);
    let mut parent: Vec<Option<(Node, u8)>> = vec![None; (end_a + 1) * width_b * 2];
    let mut seen = vec![false; parent.len()];
    let start: Node = (0, 0, false);
    seen[index(start)] = true;
    let mut queue = VecDeque::from([start]);
    let order = byte_order();
    while let Some(node) = queue.pop_front() {
        let (state_a, state_b, parted) = node;
        if state_a == end_a && state_b == end_b && (parted || !need_parted) {
            let mut witness = Vec::new();
            let mut at = node;
            while let Some((from, byte)) = parent[index(at)] {
                witness.push(byte);
                at = from;
            }
            witness.reverse();
            return Some(witness);
        }
        for &byte in &order {
            for next_a in a.step(state_a, byte).into_iter().flatten() {
                for next_b in b.step(state_b, byte).into_iter().flatten() {
                    let next = (next_a, next_b, parted || next_a != next_b);
                    if !seen[index(next)] {
                        seen[index(next)] = true;
                        parent[index(next)] = Some((node, byte));
                        queue.push_back(next);
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(template: &str, ns: &str) -> Pattern {
        let scheme = KeyScheme::parse(template, 1).expect("valid");
        Pattern::of(&scheme, &[("ns", ns.as_bytes())], &|field| {
            Alphabet::default_for(field)
        })
    }

    fn text(witness: Option<Vec<u8>>) -> Option<String> {
        witness.map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn alphabets_parse_ranges_and_refuse_nonsense() {
        let alphabet = Alphabet::parse("0-9a-c.-").unwrap();
        assert!(alphabet.contains(b'5') && alphabet.contains(b'b') && alphabet.contains(b'-'));
        assert!(!alphabet.contains(b'd') && !alphabet.contains(b':'));
        assert!(Alphabet::parse("9-0").is_err());
        assert!(Alphabet::parse("").is_err());
        assert!(Alphabet::parse("printable").unwrap().contains(b':'));
    }

    #[test]
    fn a_separator_a_field_may_contain_makes_a_key_read_two_ways() {
        // Goal: Envoy's `a_b` collision is found, and only when a field can hold the
        // separator. Method: the shortest ambiguous key, checked by hand.
        assert_eq!(
            text(pattern("rl:$model:$email", "x").ambiguity()),
            Some("rl:0::0".to_owned()),
            "model `0:` + email `0`, or model `0` + email `:0`"
        );
        assert_eq!(text(pattern("rl:$ns:$user:$model", "x").ambiguity()), None);
        assert_eq!(
            text(pattern("rl:$ns:{u:$user}:$group", "x").ambiguity()),
            None
        );
        // Two fields with no separator at all.
        assert_eq!(
            text(pattern("rl:$user$group", "x").ambiguity()),
            Some("rl:000".to_owned())
        );
    }

    #[test]
    fn two_limits_without_namespaces_of_their_own_overlap() {
        // Goal: a missing namespace is found with a witness; distinct literal namespaces are
        // not flagged. Method: new-api's bucket key against its IP key, with user ids that
        // may hold letters (a collision) and with digit-only ids (none).
        let bucket = pattern("rateLimit:$user", "");
        let ip = pattern("rateLimit:$ns$ip", "GA");
        assert_eq!(text(bucket.overlap(&ip)), Some("rateLimit:GA0".to_owned()));
        let digits = KeyScheme::parse("rateLimit:$user", 1).unwrap();
        let digit_ids = Pattern::of(&digits, &[], &|field| match field {
            "user" => Alphabet::parse("0-9").unwrap(),
            other => Alphabet::default_for(other),
        });
        assert_eq!(digit_ids.overlap(&ip), None);
        assert_eq!(
            pattern("rl:$ns:{u:$user}", "model").overlap(&pattern("rl:$ns:{u:$user}", "user")),
            None
        );
    }
}
