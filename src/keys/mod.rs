//! Key schemes: how a limit and an identity become Redis keys, and which cluster slot each
//! key lands in.
//!
//! A scheme is data, not formatting code scattered through limiters: a template such as
//! `rl:$ns:{$user}:$shard` plus a shard count. `$name` is replaced by the identity field of
//! that name (`$ns` is the limit's namespace and `$shard` the shard number); everything else
//! is literal, including `{` and `}`, which therefore act as Redis Cluster hash tags exactly as
//! written. `$$` is a literal `$`. So new-api's keys as built and the redesign's keys are both
//! one line each (see the presets), and a key-scheme change can be diffed and checked
//! (`shardcheck`) before it ships.
//!
//! * `slot`: CRC16 slots (the Redis model's cluster mode uses them too).
//! * `spread`: where keys land (slot, node under a slot map) and how the load spreads.
//! * `collide`: two identities that render to one key, found from the templates alone.

use std::fmt;

mod collide;
mod slot;
mod spread;

pub use collide::{Alphabet, Pattern};
pub use slot::{SLOT_COUNT, crc16, hash_tag, key_slot};
pub use spread::{HotSlots, SlotMap, Spread, SpreadSummary};

/// A key scheme that cannot be used, or an identity it cannot render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySchemeError {
    /// The template is malformed (a `$` not followed by a name, an unbalanced tag...).
    Template(String),
    /// The shard count is zero, or above one and the template has no `$shard`.
    Shards(String),
    /// The identity lacks a field the template names.
    MissingField(String),
    /// A field value would change the key's meaning (a `{` or `}` inside a hash tag).
    BadValue(String),
}

impl fmt::Display for KeySchemeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySchemeError::Template(why) => write!(f, "bad key template: {why}"),
            KeySchemeError::Shards(why) => write!(f, "bad shard count: {why}"),
            KeySchemeError::MissingField(name) => write!(f, "the identity has no field `{name}`"),
            KeySchemeError::BadValue(why) => write!(f, "bad identity value: {why}"),
        }
    }
}

impl std::error::Error for KeySchemeError {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Literal(Vec<u8>),
    Field(String),
}

/// A parsed key template and its shard count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyScheme {
    template: String,
    parts: Vec<Part>,
    shards: u32,
}

/// The identity a key is built for: the limit's namespace and named fields (`ip`, `user`,
/// `model`, `group`...). Values are bytes: an IP or a user id with odd bytes still renders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    fields: Vec<(String, Vec<u8>)>,
}

impl Identity {
    /// An identity with only a namespace.
    pub fn new(namespace: &str) -> Identity {
        Identity::default().with("ns", namespace)
    }

    /// Adds (or replaces) a field.
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> Identity {
        self.fields.retain(|(field, _)| field != name);
        self.fields.push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// The fields, in the order they were added.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_slice())
    }
}

impl KeyScheme {
    /// Parses a template. `shards` must be at least 1; above 1 the template must name `$shard`.
    ///
    /// ```
    /// use ratelab::keys::{Identity, KeyScheme};
    /// let scheme = KeyScheme::parse("rl:$ns:{$user}:$shard", 4).unwrap();
    /// let key = scheme.render(&Identity::new("model").with("user", "42"), 3).unwrap();
    /// assert_eq!(key, b"rl:model:{42}:3");
    /// assert!(KeyScheme::parse("rl:$", 1).is_err());
    /// ```
    pub fn parse(template: &str, shards: u32) -> Result<KeyScheme, KeySchemeError> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let bytes = template.as_bytes();
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] != b'$' {
                literal.push(bytes[index]);
                index += 1;
                continue;
            }
            if bytes.get(index + 1) == Some(&b'$') {
                literal.push(b'$');
                index += 2;
                continue;
            }
            let start = index + 1;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if end == start {
                return Err(KeySchemeError::Template(format!(
                    "`$` at byte {index} of {template:?} is not followed by a field name (write `$$` for a literal `$`)"
                )));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Field(template[start..end].to_owned()));
            index = end;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let names_shard = parts
            .iter()
            .any(|part| matches!(part, Part::Field(name) if name == "shard"));
        if shards == 0 {
            return Err(KeySchemeError::Shards("must be at least 1".to_owned()));
        }
        if shards > 1 && !names_shard {
            return Err(KeySchemeError::Shards(format!(
                "{shards} shards need `$shard` in the template {template:?}, or every shard would share one key"
            )));
        }
        Ok(KeyScheme {
            template: template.to_owned(),
            parts,
            shards,
        })
    }

    /// new-api's IP limiter key as built (path A): `rateLimit:` + mark + IP, no separator.
    pub fn newapi_ip() -> KeyScheme {
        KeyScheme::parse("rateLimit:$ns$ip", 1).expect("a valid preset")
    }

    /// new-api's search limiter key (path B): `rateLimit:SR:user:<id>`.
    pub fn newapi_user() -> KeyScheme {
        KeyScheme::parse("rateLimit:$ns:user:$user", 1).expect("a valid preset")
    }

    /// new-api's model success list (path C1): `rateLimit:MRRLS:<id>`.
    pub fn newapi_success() -> KeyScheme {
        KeyScheme::parse("rateLimit:MRRLS:$user", 1).expect("a valid preset")
    }

    /// new-api's token bucket hash (path C2): `rateLimit:<id>`, shared by every group.
    pub fn newapi_bucket() -> KeyScheme {
        KeyScheme::parse("rateLimit:$user", 1).expect("a valid preset")
    }

    /// new-api's email verification counter (path D): `emailVerification:EV:<ip>`.
    pub fn newapi_email() -> KeyScheme {
        KeyScheme::parse("emailVerification:$ns:$ip", 1).expect("a valid preset")
    }

    /// The redesign's per-user keys: a namespace per limit kind, the user as the hash tag so
    /// all of one user's limits share a slot (a multi-limit script stays legal on Cluster).
    pub fn plan_user() -> KeyScheme {
        KeyScheme::parse("rl:$ns:{u:$user}:$group", 1).expect("a valid preset")
    }

    /// The redesign's sharded hot key: one logical limit split over `shards` keys on
    /// different slots (the shard number is inside the hash tag).
    pub fn plan_sharded(shards: u32) -> Result<KeyScheme, KeySchemeError> {
        KeyScheme::parse("rl:$ns:{$ns:$shard}", shards)
    }

    /// The template as written.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Number of shards.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The identity fields the template names (not `ns` or `shard`), in template order: what
    /// tells one rate-limited identity from another under this scheme.
    pub fn identity_fields(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for part in &self.parts {
            if let Part::Field(name) = part
                && name != "ns"
                && name != "shard"
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
        names
    }

    /// The template's pieces, for analysis (`collide`).
    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The key for `identity` and shard `shard` (`0..shards`).
    pub fn render(&self, identity: &Identity, shard: u32) -> Result<Vec<u8>, KeySchemeError> {
        let mut key = Vec::new();
        self.render_into(identity, shard, &mut key)?;
        Ok(key)
    }

    /// [`KeyScheme::render`] into `key` (cleared first), so that a limiter deciding millions
    /// of times a second reuses one buffer instead of allocating a key per decision.
    pub fn render_into(
        &self,
        identity: &Identity,
        shard: u32,
        key: &mut Vec<u8>,
    ) -> Result<(), KeySchemeError> {
        use std::io::Write as _;

        if shard >= self.shards {
            return Err(KeySchemeError::Shards(format!(
                "shard {shard} is not below {}",
                self.shards
            )));
        }
        key.clear();
        let mut in_tag = false;
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => {
                    for &byte in bytes {
                        match byte {
                            b'{' if !in_tag => in_tag = true,
                            b'}' if in_tag => in_tag = false,
                            _ => {}
                        }
                    }
                    key.extend_from_slice(bytes);
                }
                Part::Field(name) if name == "shard" => {
                    write!(key, "{shard}").expect("writing to a Vec cannot fail");
                }
                Part::Field(name) => {
                    let value = identity
                        .get(name)
                        .ok_or_else(|| KeySchemeError::MissingField(name.clone()))?;
                    if in_tag && value.iter().any(|&byte| byte == b'{' || byte == b'}') {
                        return Err(KeySchemeError::BadValue(format!(
                            "field `{name}` = {:?} contains a brace inside the hash tag of {:?}",
                            String::from_utf8_lossy(value),
                            self.template
                        )));
                    }
                    key.extend_from_slice(value);
                }
            }
        }
        Ok(())
    }

    /// Every shard's key for `identity`.
    pub fn render_all(&self, identity: &Identity) -> Result<Vec<Vec<u8>>, KeySchemeError> {
        (0..self.shards)
            .map(|shard| self.render(identity, shard))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders `template` with `identity` at shard 0 and compares.
    fn check(template: &str, identity: &Identity, expected: Result<&str, KeySchemeError>) {
        let rendered = KeyScheme::parse(template, 1).and_then(|scheme| scheme.render(identity, 0));
        assert_eq!(
            rendered,
            expected.map(|key| key.as_bytes().to_vec()),
            "{template}"
        );
    }

    #[test]
    fn newapi_keys_render_as_built() {
        let ip = Identity::new("GA").with("ip", "203.0.113.7");
        assert_eq!(
            KeyScheme::newapi_ip().render(&ip, 0).unwrap(),
            b"rateLimit:GA203.0.113.7"
        );
        let user = Identity::new("SR").with("user", "42");
        assert_eq!(
            KeyScheme::newapi_user().render(&user, 0).unwrap(),
            b"rateLimit:SR:user:42"
        );
        assert_eq!(
            KeyScheme::newapi_success().render(&user, 0).unwrap(),
            b"rateLimit:MRRLS:42"
        );
        assert_eq!(
            KeyScheme::newapi_bucket().render(&user, 0).unwrap(),
            b"rateLimit:42"
        );
        let email = Identity::new("EV").with("ip", "10.0.0.1");
        assert_eq!(
            KeyScheme::newapi_email().render(&email, 0).unwrap(),
            b"emailVerification:EV:10.0.0.1"
        );
    }

    #[test]
    fn plan_keys_share_a_slot_per_user_and_shards_spread() {
        let scheme = KeyScheme::plan_user();
        let global = scheme
            .render(
                &Identity::new("total")
                    .with("user", "7")
                    .with("group", "vip"),
                0,
            )
            .unwrap();
        let model = scheme
            .render(
                &Identity::new("model")
                    .with("user", "7")
                    .with("group", "vip"),
                0,
            )
            .unwrap();
        assert_eq!(key_slot(&global), key_slot(&model));
        let sharded = KeyScheme::plan_sharded(8).unwrap();
        let keys = sharded.render_all(&Identity::new("global")).unwrap();
        let mut slots: Vec<u16> = keys.iter().map(|key| key_slot(key)).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 8, "each shard on its own slot");
    }

    #[test]
    fn templates_and_identities_are_validated() {
        let identity = Identity::new("x").with("user", "a}b");
        check("k:$", &identity, Err(KeySchemeError::Template("`$` at byte 2 of \"k:$\" is not followed by a field name (write `$$` for a literal `$`)".into())));
        check("k:$$:$ns", &identity, Ok("k:$:x"));
        check(
            "k:$model",
            &identity,
            Err(KeySchemeError::MissingField("model".into())),
        );
        check("k:$user", &identity, Ok("k:a}b"));
        assert!(matches!(
            KeyScheme::parse("k:{$user}", 1)
                .unwrap()
                .render(&identity, 0),
            Err(KeySchemeError::BadValue(_))
        ));
        assert!(matches!(
            KeyScheme::parse("k:$user", 2),
            Err(KeySchemeError::Shards(_))
        ));
        assert!(matches!(
            KeyScheme::parse("k:$shard", 0),
            Err(KeySchemeError::Shards(_))
        ));
        assert!(matches!(
            KeyScheme::parse("k:$shard", 2)
                .unwrap()
                .render(&identity, 2),
            Err(KeySchemeError::Shards(_))
        ));
        let odd = Identity::new("ns").with("ip", [0u8, 0xff, b'\n']);
        assert_eq!(
            KeyScheme::newapi_ip().render(&odd, 0).unwrap(),
            b"rateLimit:ns\x00\xff\n"
        );
    }
}
