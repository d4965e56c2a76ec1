//! Key-scheme files: for each limit kind its key template, shard count, algorithm and quota;
//! which limits one decision touches together; the topology; what each identity field may
//! hold. TOML, documented in `sim/schemes/README.md`; errors name the field.

use std::collections::BTreeMap;

use ratelab::algo::{RateQuota, WindowQuota};
use ratelab::keys::{Alphabet, KeyScheme, Pattern, SlotMap};
use ratelab::limiter::atomic::Algorithm;
use serde::Deserialize;

/// A scheme file that cannot be used: the field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemeError {
    /// The offending field (`limits.ip.shards`), or `toml` for a parse error.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for SchemeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for SchemeError {}

fn problem(field: impl Into<String>, problem: impl Into<String>) -> SchemeError {
    SchemeError {
        field: field.into(),
        problem: problem.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    #[serde(default)]
    together: Vec<Vec<String>>,
    #[serde(default)]
    topology: TopologyFile,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    limits: BTreeMap<String, LimitFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    kind: Option<String>,
    masters: Option<u32>,
    slots: Option<Vec<SlotRange>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotRange {
    first: u16,
    last: u16,
    node: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitFile {
    template: String,
    namespace: Option<String>,
    #[serde(default = "one")]
    shards: u32,
    algorithm: String,
    limit: u64,
    window_ms: u64,
}

fn one() -> u32 {
    1
}

/// One limit kind under a scheme.
#[derive(Clone, Debug)]
pub struct Limit {
    /// The kind's name (`ip`, `user`, `model`, `global`, `success`, `email`, or any).
    pub kind: String,
    /// The key template and shard count.
    pub scheme: KeyScheme,
    /// What `$ns` renders as (default: the kind's name).
    pub namespace: String,
    /// The algorithm's name as written.
    pub algorithm_name: String,
    /// The algorithm with its quota.
    pub algorithm: Algorithm,
    /// L per window.
    pub limit: u64,
    /// The window.
    pub window_ms: u64,
}

/// A loaded, validated scheme file.
#[derive(Clone, Debug)]
pub struct SchemeSet {
    /// Its name (the file's `name`, or what the caller gave).
    pub name: String,
    /// Standalone (one node) or a cluster.
    pub cluster: bool,
    /// Which node owns each slot.
    pub map: SlotMap,
    /// The limits by kind.
    pub limits: BTreeMap<String, Limit>,
    /// Groups of kinds one decision touches together (a merged multi-limit script, a success
    /// reservation): their keys must share a slot on a cluster.
    pub together: Vec<Vec<String>>,
    alphabets: BTreeMap<String, Alphabet>,
}

fn algorithm(
    field: &str,
    name: &str,
    limit: u64,
    window_ms: u64,
) -> Result<Algorithm, SchemeError> {
    let window =
        || WindowQuota::new(limit, window_ms).map_err(|error| problem(field, error.to_string()));
    let rate = || {
        RateQuota::per_window(limit, window_ms).map_err(|error| problem(field, error.to_string()))
    };
    Ok(match name {
        "fixed_window" => Algorithm::FixedWindow(window()?),
        "sliding_window" => Algorithm::SlidingWindow(window()?),
        "sliding_log" => Algorithm::SlidingLog(window()?),
        "token_bucket" => Algorithm::TokenBucket(rate()?),
        "gcra" => Algorithm::Gcra(rate()?),
        other => {
            return Err(problem(
                field.replace("quota", "algorithm"),
                format!(
                    "unknown algorithm {other:?} (fixed_window, sliding_window, sliding_log, token_bucket, gcra)"
                ),
            ));
        }
    })
}

impl SchemeSet {
    /// Parses and validates a scheme file; `default_name` names it when the file does not.
    pub fn from_toml(text: &str, default_name: &str) -> Result<SchemeSet, SchemeError> {
        let file: File =
            toml::from_str(text).map_err(|error| problem("toml", error.to_string()))?;
        if file.limits.is_empty() {
            return Err(problem("limits", "at least one limit is needed"));
        }
        let mut limits = BTreeMap::new();
        for (kind, spec) in file.limits {
            let field = format!("limits.{kind}");
            let scheme = KeyScheme::parse(&spec.template, spec.shards).map_err(|error| {
                let which = if matches!(error, ratelab::keys::KeySchemeError::Shards(_)) {
                    "shards"
                } else {
                    "template"
                };
                problem(format!("{field}.{which}"), error.to_string())
            })?;
            let algorithm = algorithm(
                &format!("{field}.quota"),
                &spec.algorithm,
                spec.limit,
                spec.window_ms,
            )?;
            if spec.shards > 1 && spec.limit < u64::from(spec.shards) {
                return Err(problem(
                    format!("{field}.shards"),
                    format!(
                        "{} shards of a limit of {} leave a shard nothing",
                        spec.shards, spec.limit
                    ),
                ));
            }
            limits.insert(
                kind.clone(),
                Limit {
                    namespace: spec.namespace.unwrap_or_else(|| kind.clone()),
                    kind,
                    scheme,
                    algorithm_name: spec.algorithm,
                    algorithm,
                    limit: spec.limit,
                    window_ms: spec.window_ms,
                },
            );
        }
        for (index, group) in file.together.iter().enumerate() {
            for kind in group {
                if !limits.contains_key(kind) {
                    return Err(problem(
                        format!("together[{index}]"),
                        format!("names {kind:?}, which is not under [limits]"),
                    ));
                }
            }
        }
        let mut alphabets = BTreeMap::new();
        for (name, spec) in &file.fields {
            let alphabet =
                Alphabet::parse(spec).map_err(|why| problem(format!("fields.{name}"), why))?;
            alphabets.insert(name.clone(), alphabet);
        }
        let (cluster, map) = topology(&file.topology)?;
        Ok(SchemeSet {
            name: file.name.unwrap_or_else(|| default_name.to_owned()),
            cluster,
            map,
            limits,
            together: file.together,
            alphabets,
        })
    }

    /// What field `name` may hold: the file's `[fields]`, else the library's default.
    pub fn alphabet(&self, name: &str) -> Alphabet {
        self.alphabets
            .get(name)
            .copied()
            .unwrap_or_else(|| Alphabet::default_for(name))
    }

    /// The language of `kind`'s keys (its namespace fixed).
    pub fn pattern(&self, limit: &Limit) -> Pattern {
        Pattern::of(
            &limit.scheme,
            &[("ns", limit.namespace.as_bytes())],
            &|name| self.alphabet(name),
        )
    }

    /// The kinds one decision on `kinds` touches: those, and every kind grouped with one of
    /// them by `together`, sorted.
    pub fn touched(&self, kinds: &[String]) -> Vec<String> {
        let mut touched: std::collections::BTreeSet<String> = kinds.iter().cloned().collect();
        for group in &self.together {
            if group.iter().any(|kind| kinds.contains(kind)) {
                touched.extend(group.iter().cloned());
            }
        }
        touched.into_iter().collect()
    }

    /// Whether the `together` group `group` is a merged multi-limit: two or more GCRA limits,
    /// none sharded, which `lua/multi_limit.lua` decides in one call, all or nothing. Other
    /// groups (new-api's token bucket beside its success list) are one call per limit.
    pub fn merged(&self, group: &[String]) -> bool {
        group.len() > 1
            && group.iter().all(|kind| {
                self.limits.get(kind).is_some_and(|limit| {
                    matches!(limit.algorithm, Algorithm::Gcra(_)) && limit.scheme.shards() == 1
                })
            })
    }

    /// The script calls one decision on `kinds` makes: each merged group it touches as one
    /// call (its kinds sorted), every other touched kind alone; ordered by first kind.
    pub fn calls(&self, kinds: &[String]) -> Vec<Vec<String>> {
        let mut calls: Vec<Vec<String>> = Vec::new();
        let mut merged: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for group in &self.together {
            if self.merged(group)
                && group.iter().any(|kind| kinds.contains(kind))
                && group.iter().all(|kind| !merged.contains(kind))
            {
                let mut call = group.clone();
                call.sort();
                call.dedup();
                merged.extend(call.iter().cloned());
                calls.push(call);
            }
        }
        for kind in self.touched(kinds) {
            if !merged.contains(&kind) {
                calls.push(vec![kind]);
            }
        }
        calls.sort();
        calls
    }
}

impl Limit {
    /// The limit's key scheme with `$ns` written in as its namespace, so that limits with
    /// different namespaces render from one identity (a merged call has one identity).
    pub fn scheme_with_namespace(&self) -> KeyScheme {
        let template = self.scheme.template();
        let bytes = template.as_bytes();
        let mut out = String::new();
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] != b'$' {
                let next = template[index..]
                    .find('$')
                    .map_or(template.len(), |at| index + at);
                out.push_str(&template[index..next]);
                index = next;
                continue;
            }
            if bytes.get(index + 1) == Some(&b'$') {
                out.push_str("$$");
                index += 2;
                continue;
            }
            let start = index + 1;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if &template[start..end] == "ns" {
                out.push_str(&self.namespace.replace('$', "$$"));
            } else {
                out.push_str(&template[index..end]);
            }
            index = end;
        }
        KeyScheme::parse(&out, self.scheme.shards())
            .expect("the template parsed before, and a literal namespace adds no field")
    }
}

fn topology(file: &TopologyFile) -> Result<(bool, SlotMap), SchemeError> {
    match file.kind.as_deref().unwrap_or("standalone") {
        "standalone" => {
            if file.masters.is_some() || file.slots.is_some() {
                return Err(problem(
                    "topology.kind",
                    "masters and slots need kind = \"cluster\"",
                ));
            }
            Ok((false, SlotMap::standalone()))
        }
        "cluster" => {
            let map = match (&file.slots, file.masters) {
                (Some(slots), _) => SlotMap::from_ranges(
                    slots
                        .iter()
                        .map(|range| (range.first, range.last, range.node))
                        .collect(),
                )
                .map_err(|why| problem("topology.slots", why))?,
                (None, masters) => SlotMap::redis_default(masters.unwrap_or(3))
                    .map_err(|why| problem("topology.masters", why))?,
            };
            Ok((true, map))
        }
        other => Err(problem(
            "topology.kind",
            format!("unknown topology {other:?} (standalone, cluster)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
together = [["model", "success"]]
[topology]
kind = "cluster"
masters = 3
[limits.model]
template = "rl:$ns:{u:$user}"
algorithm = "gcra"
limit = 10
window_ms = 1000
[limits.success]
template = "rl:$ns:{u:$user}"
algorithm = "sliding_log"
limit = 5
window_ms = 1000
"#;

    #[test]
    fn a_scheme_file_loads_and_bad_ones_name_the_field() {
        // Goal: every mistake names its field. Method: one good file, then one edit each.
        let set = SchemeSet::from_toml(SMALL, "small").unwrap();
        assert_eq!(set.name, "small");
        assert!(set.cluster);
        assert_eq!(set.map.nodes(), 3);
        assert_eq!(set.touched(&["model".to_owned()]), vec!["model", "success"]);
        let cases = [
            (
                SMALL.replace("\"gcra\"", "\"gcrx\""),
                "limits.model.algorithm",
            ),
            (
                SMALL.replace("limit = 10", "limit = 0"),
                "limits.model.quota",
            ),
            (
                SMALL.replace(
                    "{u:$user}\"\nalgorithm = \"gcra\"",
                    "{u:$}\"\nalgorithm = \"gcra\"",
                ),
                "limits.model.template",
            ),
            (
                SMALL.replace("algorithm = \"gcra\"", "algorithm = \"gcra\"\nshards = 2"),
                "limits.model.shards",
            ),
            (
                SMALL.replace("\"success\"]]", "\"sucess\"]]"),
                "together[0]",
            ),
            (
                SMALL.replace("masters = 3", "masters = 0"),
                "topology.masters",
            ),
            (
                SMALL.replace("kind = \"cluster\"", "kind = \"ring\""),
                "topology.kind",
            ),
            (
                SMALL.replace(
                    "window_ms = 1000\n[limits.success]",
                    "window_ms = 1000\ncolour = 1\n[limits.success]",
                ),
                "colour",
            ),
            (
                format!("{SMALL}\n[fields]\nuser = \"9-0\"\n"),
                "fields.user",
            ),
        ];
        for (text, field) in cases {
            let error = SchemeSet::from_toml(&text, "x")
                .expect_err(field)
                .to_string();
            assert!(error.contains(field), "{field}: {error}");
        }
    }
}
