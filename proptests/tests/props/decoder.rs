//! Property tests of the RESP decoder: it never panics, and streaming changes nothing.
//!
//! Goal: the codec sits on the network edge, so any byte sequence a peer sends must produce
//! a frame, "need more", or a protocol error, never a panic or an out-of-bounds length; and
//! the server, which parses whatever prefix has arrived, must see the same commands however
//! the bytes were split into reads. Method: arbitrary bytes, mutated valid frames, and valid
//! pipelines cut at arbitrary points, each fed to `parse_command` and `parse_reply` under the
//! standard limits and under tiny ones (so the limit paths run too).

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use ratelab::model::{Limits, Reply};
use ratelab::resp::codec::{
    Protocol, encode_command, encode_reply, encode_reply_as, parse_command, parse_reply,
};

/// One configuration for every property here: modest case counts (CI has two cores) and
/// regressions kept in `decoder.regressions` beside this file.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

/// Limits small enough that random input hits every "too big" branch.
fn tiny_limits() -> Limits {
    Limits {
        bulk_len_max: 16,
        array_len_max: 8,
        inline_len_max: 64,
        ..Limits::standard()
    }
}

fn argv_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 0..6)
}

fn reply_strategy() -> impl Strategy<Value = Reply> {
    let line = "[ -~]{0,20}";
    let leaf = prop_oneof![
        line.prop_map(Reply::Status),
        line.prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Integer),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Reply::Bulk),
        Just(Reply::Nil),
        Just(Reply::NilArray),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(Reply::Array)
    })
}

/// Replies with every RESP3 type. No `NilArray`: RESP3 has one null, which reads back as
/// `Nil`.
fn resp3_reply_strategy() -> impl Strategy<Value = Reply> {
    let line = "[ -~]{0,20}";
    let leaf = prop_oneof![
        line.prop_map(Reply::Status),
        line.prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Integer),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Reply::Bulk),
        Just(Reply::Nil),
        any::<bool>().prop_map(Reply::Bool),
        any::<f64>()
            .prop_filter("no NaN in replies", |value| !value.is_nan())
            .prop_map(|value| Reply::Double(format!("{value}"))),
        "-?[0-9]{1,40}".prop_map(Reply::BigNumber),
        ("[a-z]{3}", prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(format, text)| Reply::Verbatim(format, text)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Array),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Set),
            prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Reply::Map),
        ]
    })
}

/// A byte edit applied to a valid frame: overwrite, insert or delete at a position taken
/// modulo the frame's length.
#[derive(Clone, Debug)]
enum Edit {
    Overwrite(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    // Bytes that matter to the grammar come up often; any byte can.
    let byte = prop_oneof![
        prop::sample::select(b"*$:+-\r\n0123456789 \"'\\x".to_vec()),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, value)| Edit::Overwrite(at, value)),
        (any::<usize>(), byte).prop_map(|(at, value)| Edit::Insert(at, value)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

fn apply(frame: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        let len = frame.len();
        match *edit {
            Edit::Overwrite(at, value) if len > 0 => frame[at % len] = value,
            Edit::Insert(at, value) => frame.insert(at % (len + 1), value),
            Edit::Delete(at) if len > 0 => {
                frame.remove(at % len);
            }
            _ => {}
        }
    }
}

/// Parses `input` with both parsers under both limits and checks what a result may claim.
fn parse_everything(input: &[u8]) {
    for limits in [Limits::standard(), tiny_limits()] {
        if let Ok(Some((_, used))) = parse_command(input, &limits) {
            assert!(
                used > 0 && used <= input.len(),
                "used {used} of {}",
                input.len()
            );
        }
        if let Ok(Some((_, used))) = parse_reply(input, &limits) {
            assert!(
                used > 0 && used <= input.len(),
                "used {used} of {}",
                input.len()
            );
        }
    }
}

/// What a server sees: bytes arrive in `chunks`, and after each arrival every complete
/// command at the front is taken. Stops at the first error, as the server closes then.
fn commands_streamed(chunks: &[&[u8]], limits: &Limits) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let mut buffer = Vec::new();
    let mut commands = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        while let Some((argv, used)) = parse_command(&buffer, limits).map_err(|e| e.0)? {
            commands.push(argv);
            buffer.drain(..used);
        }
    }
    assert!(buffer.is_empty(), "whole frames leave nothing behind");
    Ok(commands)
}

/// The same for a client reading replies.
fn replies_streamed(chunks: &[&[u8]], limits: &Limits) -> Result<Vec<Reply>, String> {
    let mut buffer = Vec::new();
    let mut replies = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        while let Some((reply, used)) = parse_reply(&buffer, limits).map_err(|e| e.0)? {
            replies.push(reply);
            buffer.drain(..used);
        }
    }
    assert!(buffer.is_empty(), "whole frames leave nothing behind");
    Ok(replies)
}

/// Cuts `bytes` at the given points (taken modulo the length, sorted, deduplicated).
fn split_at_points<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points
        .iter()
        .map(|point| point % (bytes.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        chunks.push(&bytes[from..cut]);
        from = cut;
    }
    chunks
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..256)) {
        parse_everything(&input);
    }

    #[test]
    fn arbitrary_protocol_like_text_never_panics(input in "[*$:+\\-0-9\r\n a-z\"'\\\\]{0,128}") {
        parse_everything(input.as_bytes());
    }

    #[test]
    fn mutated_commands_never_panic_at_any_prefix(
        argv in argv_strategy(),
        edits in prop::collection::vec(edit_strategy(), 1..4),
    ) {
        let mut frame = Vec::new();
        encode_command(&argv, &mut frame);
        apply(&mut frame, &edits);
        for end in 0..=frame.len() {
            parse_everything(&frame[..end]);
        }
    }

    #[test]
    fn mutated_replies_never_panic_at_any_prefix(
        reply in reply_strategy(),
        edits in prop::collection::vec(edit_strategy(), 1..4),
    ) {
        let mut frame = Vec::new();
        encode_reply(&reply, &mut frame);
        apply(&mut frame, &edits);
        for end in 0..=frame.len() {
            parse_everything(&frame[..end]);
        }
    }

    #[test]
    fn mutated_resp3_replies_never_panic_at_any_prefix(
        reply in resp3_reply_strategy(),
        edits in prop::collection::vec(edit_strategy(), 1..4),
    ) {
        let mut frame = Vec::new();
        encode_reply_as(&reply, Protocol::Resp3, &mut frame);
        apply(&mut frame, &edits);
        for end in 0..=frame.len() {
            parse_everything(&frame[..end]);
        }
    }

    #[test]
    fn resp3_replies_parse_the_same_in_any_chunks(
        replies in prop::collection::vec(resp3_reply_strategy(), 1..6),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for reply in &replies {
            encode_reply_as(reply, Protocol::Resp3, &mut wire);
        }
        let limits = Limits::standard();
        let whole = replies_streamed(&[&wire], &limits);
        let chunked = replies_streamed(&split_at_points(&wire, &points), &limits);
        prop_assert_eq!(&whole, &chunked);
        prop_assert_eq!(whole, Ok(replies.clone()));
        // RESP2 sees the same replies flattened, and reads back exactly the flattened form.
        let mut flat = Vec::new();
        for reply in &replies {
            encode_reply_as(reply, Protocol::Resp2, &mut flat);
        }
        let flattened: Vec<Reply> = replies.into_iter().map(Reply::to_resp2).collect();
        prop_assert_eq!(replies_streamed(&[&flat], &limits), Ok(flattened));
    }

    #[test]
    fn pipelined_commands_parse_the_same_in_any_chunks(
        commands in prop::collection::vec(argv_strategy(), 1..8),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for argv in &commands {
            encode_command(argv, &mut wire);
        }
        let limits = Limits::standard();
        let whole = commands_streamed(&[&wire], &limits);
        let chunked = commands_streamed(&split_at_points(&wire, &points), &limits);
        prop_assert_eq!(&whole, &chunked);
        // And what came out is what went in, empty commands included as empty frames.
        prop_assert_eq!(whole, Ok(commands));
    }

    #[test]
    fn inline_commands_parse_the_same_in_any_chunks(
        lines in prop::collection::vec("[a-zA-Z0-9 \"'\\\\]{0,24}", 1..6),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let wire: Vec<u8> = lines.iter().flat_map(|line| format!("{line}\r\n").into_bytes()).collect();
        let limits = Limits::standard();
        let whole = commands_streamed(&[&wire], &limits);
        let chunked = commands_streamed(&split_at_points(&wire, &points), &limits);
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn replies_parse_the_same_in_any_chunks(
        replies in prop::collection::vec(reply_strategy(), 1..6),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for reply in &replies {
            encode_reply(reply, &mut wire);
        }
        let limits = Limits::standard();
        let whole = replies_streamed(&[&wire], &limits);
        let chunked = replies_streamed(&split_at_points(&wire, &points), &limits);
        prop_assert_eq!(&whole, &chunked);
        prop_assert_eq!(whole, Ok(replies));
    }
}
