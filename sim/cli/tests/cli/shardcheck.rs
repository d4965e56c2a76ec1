//! `ratelab shardcheck` as a user runs it: exit 0 when decisions, collisions and CROSSSLOT
//! are unchanged, 1 when they change, 2 on bad input with the field named.

use std::process::{Command, Output};

const SCHEMES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemes");
const MIXED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/mixed-limit-kinds.toml"
);

fn shardcheck(before: &str, after: &str, rest: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ratelab"))
        .args(["shardcheck", "--before", before, "--after", after])
        .args(rest)
        .output()
        .expect("the binary runs")
}

fn example(name: &str) -> String {
    format!("{SCHEMES}/examples/{name}.toml")
}

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("ratelab-shardcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[test]
fn exit_codes_follow_the_semantics() {
    // Goal: 0 for the null pair and a pure load move, 1 for a lost tag (CROSSSLOT), a
    // collision-prone separator, a shard-count change and new-api's migration. Method: the
    // shipped schemes on the shipped scenario's traffic.
    let base = example("base");
    for (after, code, says) in [
        (base.clone(), 0, "semantics unchanged"),
        (example("tag-move"), 0, "semantics unchanged"),
        (example("rename"), 0, "12 of 12 logical keys get a new key"),
        (example("lost-tag"), 1, "CROSSSLOT decisions 0 -> "),
        (example("separator"), 1, "collisions changed"),
        (example("shards"), 1, "decisions differ"),
    ] {
        let output = shardcheck(&base, &after, &["--scenario", MIXED]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(code), "{after}: {stdout}");
        assert!(
            stdout.contains(says),
            "{after} does not say {says:?}: {stdout}"
        );
    }
    let output = shardcheck(
        &format!("{SCHEMES}/new-api-current.toml"),
        &format!("{SCHEMES}/new-api-planned.toml"),
        &["--scenario", MIXED, "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(json["report"]["after"]["crossslot_count"], 0);
    assert!(
        json["semantics_changed"][0]
            .as_str()
            .unwrap()
            .contains("decisions differ")
    );
}

#[test]
fn traces_and_swarms_are_traffic_too() {
    // Goal: `--trace` and `--swarm` feed the same check. Method: a two-identity trace that
    // collides under the separator scheme (1), and a swarm seed on identical schemes (0).
    let mut trace = String::from("# user 7 on two models that render alike\n");
    for index in 0..20 {
        let (model, group) = if index % 2 == 0 {
            ("gpt-4o", "vip")
        } else {
            ("gpt", "4o-vip")
        };
        trace.push_str(&format!(
            "{{\"at_ms\": {}, \"limits\": [\"model\"], \"fields\": {{\"user\": \"7\", \"model\": \"{model}\", \"group\": \"{group}\"}}}}\n",
            index * 10
        ));
    }
    let path = temp_file("collide.jsonl", &trace);
    let output = shardcheck(&example("base"), &example("separator"), &["--trace", &path]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("collisions seen in traffic: 1"), "{stdout}");
    let output = shardcheck(&example("base"), &example("base"), &["--swarm", "3"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn bad_input_is_exit_2_with_the_field_named() {
    // Goal: every bad input names what is wrong and exits 2, never a panic.
    let base = std::fs::read_to_string(example("base")).expect("shipped");
    let bad_shards = temp_file(
        "bad-shards.toml",
        &base.replace(
            "template = \"rl:$ns:{ip:$ip}\"",
            "template = \"rl:$ns:{ip:$ip}\"\nshards = 3",
        ),
    );
    let no_ip = temp_file("no-ip.toml", &base.replace("[limits.ip]", "[limits.ipv6]"));
    let bad_trace = temp_file(
        "bad.jsonl",
        "{\"at_ms\": 1, \"limits\": [\"ip\"], \"fields\": {}, \"cost\": 0}\n",
    );
    let base_path = example("base");
    let cases: [(&str, &str, Vec<&str>, &str); 5] = [
        (
            &bad_shards,
            &base_path,
            vec!["--scenario", MIXED],
            "limits.ip.shards",
        ),
        (
            &base_path,
            &no_ip,
            vec!["--scenario", MIXED],
            "limits: \"ip\" is not a limit of scheme",
        ),
        (
            &base_path,
            &base_path,
            vec!["--trace", &bad_trace],
            "line 1: cost",
        ),
        (&base_path, &base_path, vec![], "traffic"),
        (
            &base_path,
            "/nonexistent/after.toml",
            vec!["--scenario", MIXED],
            "cannot read",
        ),
    ];
    for (before, after, rest, field) in cases {
        let output = shardcheck(before, after, &rest);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{field}: {stderr}");
        assert!(stderr.contains(field), "does not name {field}: {stderr}");
    }
    let both = shardcheck(
        &base_path,
        &base_path,
        &["--scenario", MIXED, "--swarm", "1"],
    );
    assert_eq!(
        both.status.code(),
        Some(2),
        "two traffic sources are refused"
    );
}

#[test]
fn simulate_blames_only_differences_beyond_the_noise_floor() {
    // Goal: `--simulate` adds the simulated comparison and cut-over to text and JSON, and its
    // verdict follows the noise floor. Method: the noisy cluster load shipped with the
    // examples: a hash-tag move differs there only by noise (exit 0 with the simulated
    // section printed), a shard-count change beyond it (exit 1, named in the JSON).
    let base = example("base");
    let load = example("noisy-cluster-load");
    let output = shardcheck(
        &base,
        &example("tag-move"),
        &["--scenario", &load, "--simulate"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for says in [
        "simulated (load seed 1, network seeds 1 and 2",
        "not blamed",
        "beyond the noise floor: 0",
        "cut-over simulated: worst",
        "semantics unchanged",
    ] {
        assert!(stdout.contains(says), "does not say {says:?}: {stdout}");
    }
    let output = shardcheck(
        &base,
        &example("shards"),
        &["--scenario", &load, "--simulate", "--format", "json"],
    );
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    let simulated = &json["simulated"];
    assert!(
        simulated["beyond_noise"].as_u64().unwrap() > 0,
        "{simulated}"
    );
    assert!(simulated["noise"].as_u64().unwrap() > 0, "{simulated}");
    let cutover = &simulated["cutover"];
    assert!(
        cutover["worst_in_window"].as_u64().unwrap()
            <= cutover["bound_in_window"].as_u64().unwrap()
    );
    let changes = json["semantics_changed"].to_string();
    assert!(changes.contains("beyond the noise floor"), "{changes}");
    // Without --simulate the JSON says so (null), and a trace cannot be simulated.
    let output = shardcheck(&base, &base, &["--scenario", &load, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert!(json["simulated"].is_null());
    let trace = temp_file(
        "one.jsonl",
        "{\"at_ms\": 1, \"limits\": [\"ip\"], \"fields\": {\"ip\": \"1.2.3.4\"}}\n",
    );
    let output = shardcheck(&base, &base, &["--trace", &trace, "--simulate"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--simulate: needs --scenario or --swarm"),
        "{stderr}"
    );
}
