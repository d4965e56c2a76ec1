//! Which key a request is for, and the names a key has: the log's (`k3`, `ip:k3`), the
//! identity a limiter renders, and the draw of a key by popularity.

use super::*;

/// Cumulative weights for key draws (`None`: uniform, no table).
pub(crate) fn key_weights(keys: u64, popularity: &Popularity) -> Option<Vec<f64>> {
    match popularity {
        Popularity::Uniform | Popularity::Hot { .. } => None,
        Popularity::Zipf { s } => {
            let mut total = 0.0;
            let table = (0..keys)
                .map(|key| {
                    total += 1.0 / ((key + 1) as f64).powf(*s);
                    total
                })
                .collect();
            Some(table)
        }
    }
}

/// One key in `0..keys`, drawn by `popularity` (with `weights`, its [`key_weights`]).
pub(crate) fn draw_key(
    rng: &mut ChaCha8Rng,
    keys: u64,
    popularity: &Popularity,
    weights: &Option<Vec<f64>>,
) -> u64 {
    match (popularity, weights) {
        (Popularity::Zipf { .. }, Some(table)) => {
            let total = *table.last().expect("at least one key");
            let target = rng.random::<f64>() * total;
            let index = table.partition_point(|&cumulative| cumulative <= target);
            u64::try_from(index.min(table.len() - 1)).expect("fits")
        }
        (Popularity::Hot { share }, _) if keys > 1 => {
            if rng.random_bool(*share) {
                0
            } else {
                rng.random_range(1..keys)
            }
        }
        _ => rng.random_range(0..keys),
    }
}

/// The logical key's name in the log: `k3` without a mix, `ip:k3`, `user:k3` or `model:k3`
/// with one, so the checker bounds each (kind, key) on its own.
pub fn key_name(kind: Option<IdentityKind>, key: u64) -> String {
    match kind {
        None => format!("k{key}"),
        Some(kind) => format!("{}:k{key}", kind.name()),
    }
}

/// The logical key named `name` in the log (`k3`, `ip:k3`): its kind and number, the
/// inverse of [`key_name`].
pub fn parse_key_name(name: &str) -> Option<(Option<IdentityKind>, u64)> {
    let (kind, number) = match name.split_once(':') {
        None => (None, name),
        Some((kind, number)) => (
            Some(
                IdentityKind::ALL
                    .into_iter()
                    .find(|candidate| candidate.name() == kind)?,
            ),
            number,
        ),
    };
    Some((kind, number.strip_prefix('k')?.parse().ok()?))
}

/// The identity a request on logical key `key` presents to `limiter`.
///
/// Without a mix (`kind` is `None`): namespace `GA` (new-api's global API mark) for the IP
/// list, `model` otherwise; ip `10.0.a.b` from the key, user the key, model `gpt-4o`.
///
/// With a mix, every field a key template can name is distinct per (kind, key), so each
/// becomes its own rate-limited identity under any template naming `$user` or `$ip`:
/// * namespace: the kind (`ip`, `user`, `model`) for atomic and in-process GCRA limiters;
///   legacy limiters keep new-api's fixed keys (mark `GA` for path A's IP lists, in Redis
///   and in memory), since new-api applies the same limit whatever the caller is;
/// * ip: `10.<c>.a.b`, c = 0 for ip, 1 for user, 2 for model: each kind's callers come from
///   their own /16, so new-api's IP-keyed limits (path A, email, the in-memory list) count
///   each (kind, key) apart;
/// * user: the key for the user kind, `ip-<key>` and `model-<key>` for the others: every
///   shipped template (the default `rl:$ns:{u:$user}` among them) and new-api's user-keyed
///   limits (the model request limits key by user id) hash on the user, so a fixed user
///   would fold all of a kind's keys into one;
/// * model: `model-<key>` for the model kind, `gpt-4o` otherwise.
pub fn identity(
    limiter: LimiterKind,
    kind: Option<IdentityKind>,
    key: u64,
    group: &str,
) -> Identity {
    let low = format!("{}.{}", key / 256 % 256, key % 256);
    let Some(kind) = kind else {
        let namespace = match limiter {
            // new-api's mark for the global API limit (`GA`).
            LimiterKind::LegacyIpList => "GA",
            // new-api's mark for the user limiter (`SR`).
            LimiterKind::LegacyUserList => "SR",
            _ => "model",
        };
        return Identity::new(namespace)
            .with("ip", format!("10.0.{low}"))
            .with("user", user_id(limiter, key))
            .with("group", group)
            .with("model", "gpt-4o");
    };
    let namespace = match limiter {
        // Path A, in Redis or in memory: new-api's global API mark for every request.
        LimiterKind::LegacyIpList | LimiterKind::LegacyMemoryList => "GA",
        LimiterKind::LegacyUserList => "SR",
        _ if limiter.is_legacy() => "model",
        _ => kind.name(),
    };
    let user = match kind {
        IdentityKind::User => user_id(limiter, key),
        IdentityKind::Ip | IdentityKind::Model => format!("{}-{key}", kind.name()),
    };
    let model = match kind {
        IdentityKind::Model => format!("model-{key}"),
        IdentityKind::Ip | IdentityKind::User => "gpt-4o".to_owned(),
    };
    Identity::new(namespace)
        .with("ip", format!("10.{}.{low}", kind.index()))
        .with("user", user)
        .with("group", group)
        .with("model", model)
}

/// A user id for logical key `key`: the key itself, but from 1 for new-api's user list,
/// which refuses user 0 (new-api's 401 for a request without a user).
fn user_id(limiter: LimiterKind, key: u64) -> String {
    match limiter {
        LimiterKind::LegacyUserList => (key + 1).to_string(),
        _ => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: every name the log gives a key parses back to it, and names that are not a
    /// key's are refused, not misread.
    #[test]
    fn key_names_parse_back_and_odd_names_are_refused() {
        let kinds = [
            None,
            Some(IdentityKind::Ip),
            Some(IdentityKind::User),
            Some(IdentityKind::Model),
        ];
        for kind in kinds {
            for key in [0, 1, 9, 10, 4_096, u64::MAX] {
                let name = key_name(kind, key);
                assert_eq!(parse_key_name(&name), Some((kind, key)), "{name}");
            }
        }
        assert_eq!(key_name(Some(IdentityKind::Ip), 3), "ip:k3");
        for odd in [
            "", "k", "3", "kx", "k-1", "ip:", "ip:3", "host:k3", "k3:ip", "ip:k3x",
        ] {
            assert_eq!(parse_key_name(odd), None, "{odd:?}");
        }
    }

    /// Goal: the Zipf table is cumulative 1/(k+1)^s, and every draw is a key in range,
    /// key 0 the most drawn under Zipf and hot popularity.
    #[test]
    fn key_draws_follow_their_popularity() {
        let zipf = Popularity::Zipf { s: 1.0 };
        let table = key_weights(4, &zipf).expect("a table for Zipf");
        let expected = [1.0, 1.5, 1.5 + 1.0 / 3.0, 1.5 + 1.0 / 3.0 + 0.25];
        for (got, want) in table.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{table:?}");
        }
        assert_eq!(key_weights(4, &Popularity::Uniform), None);
        let hot = Popularity::Hot { share: 0.8 };
        for (popularity, weights) in [(zipf, Some(table)), (hot, None)] {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut counts = [0u32; 4];
            for _ in 0..4_000 {
                let key = draw_key(&mut rng, 4, &popularity, &weights);
                counts[usize::try_from(key).expect("small")] += 1;
            }
            assert!(
                counts[1..]
                    .iter()
                    .all(|&count| count > 0 && count < counts[0]),
                "{popularity:?}: {counts:?}"
            );
        }
    }
}
