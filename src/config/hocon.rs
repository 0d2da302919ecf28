//! Loading a [`Config`] from [HOCON](https://github.com/lightbend/config/blob/main/HOCON.md)
//! text or a HOCON file.
//!
//! ```text
//! {
//!     config_id: 1,           # optional, default 1
//!     pid: 2,                 # required: this server's id (positive)
//!     peers: [1, 3],          # the other servers; or instead: nodes: [1, 2, 3]
//!     log_file_path: "/omnipaxos/logs"
//!     storage { type = persistent, path = "/var/lib/omnipaxos/2", sync = always }
//! }
//! ```
//!
//! Keys (defaults in parentheses): `config_id` (1), `pid` (required), `peers` (required
//! unless `nodes` is given), `nodes` (all servers including `pid`; `peers` is then `nodes`
//! without `pid`), `leader_priority` (0), `election_tick_timeout` (10),
//! `resend_tick_timeout` (5), `buffer_size` (100000), `batch_size` (1000),
//! `max_message_bytes` (64 MiB), `log_file_path` (none), and `storage { type = memory |
//! persistent (memory), path (required for persistent), sync = always | never (always),
//! segment_bytes (64 MiB) }`.
//!
//! Integers may also be written as quoted strings (`pid = "2"`, the only way to write a pid
//! above 2^63 - 1 exactly); the two sizes in bytes also accept HOCON size units
//! (`max_message_bytes = "16 MiB"`). A key set to `null` counts as not set.
//!
//! Every mistake is a [`ConfigError`] whose `key` names the key at fault (dotted for nested
//! keys, e.g. `storage.path`) and whose message says what was expected: missing required
//! keys, unknown keys (anywhere, with a suggestion for near misses), ill-typed or
//! out-of-range values, and malformed HOCON. Nothing here panics, aborts, blocks or prints,
//! whatever the text: the `hocon` parser runs under `catch_unwind` on a thread of its own
//! with a generous stack (its panics are kept off stderr, see `crate::quiet`), after a
//! pre-scan that rejects what is known to crash, hang or mislead it: deep nesting, bad
//! `\u` escapes, non-ASCII text outside quotes, texts over 64 KiB, more than
//! [`MAX_ITEMS`] keys and values (the parser's time grows quadratically with their
//! number: 250 keys take about 12 ms, 2000 half a second), `include` directives, and
//! substitutions that refer to the key they define (`a = ${a}`, or a cycle), which the
//! parser silently reads as null.
//!
//! **`include` is not supported**: an included file would escape every limit above (it
//! was read by the `hocon` crate itself: a file of 20,000 `[` overflowed the parser's
//! stack, `include "/dev/zero"` grew without bound). A configuration is one file.

use std::path::{Path, PathBuf};

use hocon::{Hocon, HoconLoader};

use crate::config::{Config, StorageConfig, SyncPolicy};
use crate::errors::ConfigError;
use crate::messages::NodeId;

/// The largest configuration text accepted. A real one is a few hundred bytes; the `hocon`
/// parser takes time quadratic in the number of keys or list elements (seconds for a few
/// thousand), so a limit keeps a mistaken or hostile file from hanging the caller.
const MAX_TEXT_BYTES: usize = 64 << 10;

/// The deepest nesting of objects, lists and dotted key segments accepted. The `hocon`
/// parser recurses once per level and overflows its stack after a few hundred.
const MAX_NESTING: usize = 64;

/// The most keys, list elements and substitutions (a substitution counts twice) a text
/// may hold. The `hocon` parser's time is quadratic in their number (measured in a release
/// build: 250 keys 12 ms, 500 keys 42 ms, 2000 keys 530 ms; a 42 KB `peers` list of 8000
/// pids took seconds); a real configuration has a few dozen.
pub const MAX_ITEMS: usize = 256;

/// Stack of the parser thread: far more than [`MAX_NESTING`] levels need, even in debug
/// builds, and independent of the stack size of the caller's thread.
const PARSER_STACK_BYTES: usize = 16 << 20;

/// Default of `storage.segment_bytes`.
const DEFAULT_SEGMENT_BYTES: usize = 64 << 20;

const ROOT_KEYS: &[&str] = &[
    "config_id",
    "pid",
    "peers",
    "nodes",
    "leader_priority",
    "election_tick_timeout",
    "resend_tick_timeout",
    "buffer_size",
    "batch_size",
    "max_message_bytes",
    "log_file_path",
    "storage",
];

const STORAGE_KEYS: &[&str] = &["type", "path", "sync", "segment_bytes"];

/// Loads a configuration from HOCON text.
///
/// `include` directives are not supported; substitutions such as `${HOME}` may refer to
/// keys of the text or to environment variables, but not to the key they define.
pub fn from_str(text: &str) -> Result<Config, ConfigError> {
    prescan(text)?;
    if text.contains("${") {
        check_substitutions(text)?;
    }
    // Comments and indentation mean nothing but cost parser time (see `compact`); the
    // `hocon` parser rejects spaces or tabs after the last line break.
    let compacted = compact(text);
    let text = compacted.trim_end();
    check_cost(text)?;
    let doc = parse_guarded(|| HoconLoader::new().strict().load_str(text)?.hocon())?;
    build(&doc)
}

/// The parser work [`check_cost`] accepts: about 20 ms in a release build (measured: 250
/// keys, cost 625,000, 11.5 ms; 250 keys then a 57 KB string, cost 28.5 million, 454 ms:
/// 17 ns per unit).
pub const MAX_PARSE_COST: u64 = 1_200_000;

/// `text` without comments and without the blanks that start a line (outside
/// triple-quoted strings), line breaks kept so that the parser's line numbers stay right.
/// The `hocon` parser rescans the rest of the text for each key or value it reads (250 keys
/// followed by 57 KB of comments took 450 ms, before them 13 ms), so what it is not given
/// costs nothing.
fn compact(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0usize;
    let mut line_start = true;
    while let Some(&c) = b.get(i) {
        match c {
            b'\n' => {
                // Blanks before the line break mean nothing either.
                while matches!(out.last(), Some(b' ' | b'\t' | b'\r')) {
                    out.pop();
                }
                out.push(c);
                line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' if line_start => {
                i += 1;
                continue;
            }
            b'#' => i = skip_comment(b, i),
            b'/' if b.get(i + 1) == Some(&b'/') => i = skip_comment(b, i),
            b'"' if b.get(i..i + 3) == Some(b"\"\"\"") => {
                let body = i + 3;
                let end = find(&b[body..], b"\"\"\"").map_or(b.len(), |l| body + l + 3);
                let mut end = end.min(b.len());
                while b.get(end) == Some(&b'"') {
                    end += 1;
                }
                out.extend_from_slice(&b[i..end]);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while let Some(&x) = b.get(j) {
                    match x {
                        b'"' => {
                            j += 1;
                            break;
                        }
                        b'\n' => break,
                        b'\\' => j = (j + 2).min(b.len()),
                        _ => j += 1,
                    }
                }
                out.extend_from_slice(&b[i..j]);
                i = j;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
        line_start = false;
    }
    // Only whole ASCII tokens and whole strings were dropped or copied: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Rejects text that would keep the `hocon` parser busy for long: it rescans the rest of
/// the text for every key, value and separator, so its work is about the sum, over them,
/// of the bytes that follow each one.
fn check_cost(text: &str) -> Result<(), ConfigError> {
    let b = text.as_bytes();
    let len = b.len() as u64;
    let mut cost = 0u64;
    let mut items = 0u64;
    for (i, &c) in b.iter().enumerate() {
        if matches!(c, b'=' | b':' | b',' | b'{' | b'[' | b'$' | b'\n') {
            cost += len - i as u64;
            items += 1;
        }
    }
    if cost > MAX_PARSE_COST {
        return Err(ConfigError::new(
            "",
            format!(
                "the configuration is too large for this HOCON parser to read quickly \
                 ({items} keys, values and lines in {len} bytes without comments; its time grows \
                 with their product): a real configuration is a few dozen short lines"
            ),
        ));
    }
    Ok(())
}

/// Loads a configuration from a HOCON file (a regular file of at most 64 KiB; FIFOs,
/// devices and directories are refused without being read). Every error message names
/// the file. `include` directives are not supported.
pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
    let in_file = |e: ConfigError| ConfigError {
        message: format!("{} (in {})", e.message, path.display()),
        key: e.key,
    };
    let text = read_text(path)?;
    from_str(&text).map_err(in_file)
}

/// Reads the file as UTF-8 text, with errors that name the file and the reason. It is
/// opened without blocking (`O_NONBLOCK`: a FIFO with no writer would block `open`
/// forever) and must be a regular file.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let fail = |what: String| {
        ConfigError::new(
            "",
            format!(
                "cannot read the configuration file {}: {what}",
                path.display()
            ),
        )
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(fail("it is a directory".into()));
    }
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(fail(format!(
            "it is {what}; a configuration must be a regular file"
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_TEXT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() > MAX_TEXT_BYTES {
        return Err(fail(format!(
            "it is larger than the {MAX_TEXT_BYTES} bytes accepted for a configuration file"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Rejects, with a line number, text that the `hocon` parser is known to crash on or to
/// read wrongly: nesting deeper than [`MAX_NESTING`] (stack overflow), `\u` escapes without
/// four hex digits or with unpaired surrogates (silently dropped by the parser, or a
/// panic), non-ASCII characters outside quoted strings (a panic) and control characters
/// (read as the end of the text). Everything else is left to the parser.
fn prescan(text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ConfigError::new(
            "",
            format!(
                "the configuration text is {} bytes; at most {MAX_TEXT_BYTES} bytes are accepted",
                text.len()
            ),
        ));
    }
    let b = text.as_bytes();
    let malformed = |line: usize, what: String| {
        ConfigError::new("", format!("malformed HOCON at line {line}: {what}"))
    };
    let mut line = 1usize;
    // Open objects and lists (`{` or `[`), innermost last.
    let mut open: Vec<u8> = Vec::new();
    let mut dots = 0usize;
    let mut items = 0usize;
    let mut i = 0usize;
    let mut count = |n: usize, line: usize| {
        items += n;
        if items > MAX_ITEMS {
            Err(malformed(
                line,
                format!(
                    "the configuration holds more than {MAX_ITEMS} keys, list elements and \
                     substitutions; a real one holds a few dozen (the HOCON parser's time \
                     grows quadratically with their number)"
                ),
            ))
        } else {
            Ok(())
        }
    };
    while let Some(&c) = b.get(i) {
        match c {
            b'\n' => {
                if open.last() == Some(&b'[') {
                    count(1, line)?;
                }
                line += 1;
                dots = 0;
                i += 1;
            }
            b'$' if b.get(i + 1) == Some(&b'{') => {
                count(2, line)?;
                i += 1;
            }
            b'i' if b[i..].starts_with(b"include")
                && (i == 0 || !is_word_byte(b[i - 1]))
                && b.get(i + 7)
                    .is_some_and(|&n| n == b' ' || n == b'\t' || n == b'"') =>
            {
                let rest = b[i + 7..]
                    .iter()
                    .position(|&n| n != b' ' && n != b'\t')
                    .map(|p| &b[i + 7 + p..]);
                let directive = rest.is_some_and(|r| {
                    r.starts_with(b"\"")
                        || [&b"file("[..], b"url(", b"classpath(", b"required("]
                            .iter()
                            .any(|w| r.starts_with(w))
                });
                if directive {
                    return Err(malformed(
                        line,
                        "`include` is not supported: write every key in this one file \
                         (an included file would escape the size, nesting and time limits \
                         that this file is checked against)"
                            .into(),
                    ));
                }
                i += 7;
            }
            b'#' => i = skip_comment(b, i),
            b'/' if b.get(i + 1) == Some(&b'/') => i = skip_comment(b, i),
            b'"' if b.get(i..i + 3) == Some(b"\"\"\"") => {
                // A raw multi-line string: no escapes. Unterminated is left to the parser.
                let body = i + 3;
                let Some(len) = find(&b[body..], b"\"\"\"") else {
                    return Ok(());
                };
                line += b[body..body + len].iter().filter(|&&c| c == b'\n').count();
                i = body + len + 3;
                while b.get(i) == Some(&b'"') {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while let Some(&c) = b.get(i) {
                    match c {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\n' => break, // unterminated: left to the parser
                        b'\\' if b.get(i + 1) == Some(&b'u') => {
                            let unit = hex4(b, i + 2).ok_or_else(|| {
                                malformed(
                                    line,
                                    "a \\u escape must be followed by four hex digits".into(),
                                )
                            })?;
                            i += 6;
                            if (0xDC00..0xE000).contains(&unit) {
                                return Err(malformed(
                                    line,
                                    format!("\\u{unit:04X} is an unpaired UTF-16 low surrogate"),
                                ));
                            }
                            if (0xD800..0xDC00).contains(&unit) {
                                let low = (b.get(i..i + 2) == Some(b"\\u"))
                                    .then(|| hex4(b, i + 2))
                                    .flatten();
                                match low {
                                    Some(low) if (0xDC00..0xE000).contains(&low) => i += 6,
                                    _ => {
                                        return Err(malformed(
                                            line,
                                            format!(
                                                "\\u{unit:04X} is a UTF-16 high surrogate not \
                                                 followed by a \\u escape of a low surrogate"
                                            ),
                                        ))
                                    }
                                }
                            }
                        }
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
            }
            b'{' | b'[' => {
                open.push(c);
                count(1, line)?;
                dots = 0;
                if open.len() > MAX_NESTING {
                    return Err(malformed(
                        line,
                        format!("objects and lists are nested more than {MAX_NESTING} deep"),
                    ));
                }
                i += 1;
            }
            b'}' | b']' => {
                open.pop();
                dots = 0;
                i += 1;
            }
            b'.' => {
                dots += 1;
                if open.len() + dots > MAX_NESTING {
                    return Err(malformed(
                        line,
                        format!("keys are nested more than {MAX_NESTING} deep"),
                    ));
                }
                i += 1;
            }
            b',' | b'=' | b':' => {
                count(1, line)?;
                dots = 0;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | 0x0B | 0x0C => {
                dots = 0;
                i += 1;
            }
            0..=0x1F | 0x7F => {
                return Err(malformed(
                    line,
                    format!("control character U+{c:04X} outside a quoted string"),
                ))
            }
            0x80.. => {
                let ch = text
                    .get(i..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or('\u{FFFD}');
                // A byte-order mark is fine at the very start; anywhere else the parser
                // may panic on it like on any other non-ASCII character.
                if !(i == 0 && ch == '\u{FEFF}') {
                    return Err(malformed(
                        line,
                        format!(
                            "non-ASCII character {ch:?} outside a quoted string; this HOCON \
                             parser only accepts non-ASCII text in double quotes"
                        ),
                    ));
                }
                dots = 0;
                i += ch.len_utf8();
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// One open object or list while [`check_substitutions`] reads the text.
struct Frame {
    list: bool,
    /// An object: its dotted path. A list: the key whose value it is.
    path: String,
    /// An object: whether the next word is a key.
    expect_key: bool,
    /// An object: the dotted path of the field being defined.
    key: Option<String>,
}

/// Whether `a` and `b` are the same key or one holds the other.
fn related(a: &str, b: &str) -> bool {
    let inside =
        |x: &str, y: &str| x.len() > y.len() && x.starts_with(y) && x.as_bytes()[y.len()] == b'.';
    a == b || inside(a, b) || inside(b, a)
}

/// Rejects substitutions that refer to the key they define (`a = ${a}`, `a { b = ${a} }`,
/// `peers = [${peers}]`) or that form a cycle (`a = ${b}`, `b = ${a}`): the `hocon` parser
/// silently reads them as null, so `pid = ${pid}` would end in a misleading "pid is
/// missing". Reads the text a second time, after [`prescan`], with a small tokenizer that
/// follows keys, objects and lists (enough for this check, not a HOCON parser).
fn check_substitutions(text: &str) -> Result<(), ConfigError> {
    let b = text.as_bytes();
    let mut stack = vec![Frame {
        list: false,
        path: String::new(),
        expect_key: true,
        key: None,
    }];
    // (defining key, referenced path, line)
    let mut edges: Vec<(String, String, usize)> = Vec::new();
    let mut line = 1usize;
    let mut i = 0usize;
    let join = |base: &str, k: &str| {
        if base.is_empty() {
            k.to_string()
        } else {
            format!("{base}.{k}")
        }
    };
    while let Some(&c) = b.get(i) {
        let top = stack.len() - 1;
        match c {
            b'\n' | b',' => {
                if c == b'\n' {
                    line += 1;
                }
                if !stack[top].list {
                    stack[top].expect_key = true;
                }
                i += 1;
            }
            b'#' => i = skip_comment(b, i),
            b'/' if b.get(i + 1) == Some(&b'/') => i = skip_comment(b, i),
            b'$' if b.get(i + 1) == Some(&b'{') => {
                let end = b[i..]
                    .iter()
                    .position(|&x| x == b'}')
                    .map_or(b.len(), |p| i + p);
                let inner = text.get(i + 2..end).unwrap_or("");
                let target: String = inner
                    .trim()
                    .trim_start_matches('?')
                    .trim()
                    .chars()
                    .filter(|&ch| ch != '"')
                    .collect();
                let defining = stack.iter().rev().find_map(|f| {
                    if f.list {
                        Some(f.path.clone())
                    } else {
                        f.key.clone()
                    }
                });
                if let Some(k) = defining.filter(|k| !k.is_empty()) {
                    edges.push((k, target, line));
                }
                i = end + 1;
            }
            b'{' | b'[' => {
                let f = &stack[top];
                let path = if f.list {
                    f.path.clone()
                } else if f.expect_key {
                    // `{` where a key belongs: braces around the root object.
                    f.path.clone()
                } else {
                    f.key.clone().unwrap_or_default()
                };
                stack.push(Frame {
                    list: c == b'[',
                    path,
                    expect_key: c == b'{',
                    key: None,
                });
                i += 1;
            }
            b'}' | b']' => {
                if stack.len() > 1 {
                    stack.pop();
                }
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b'=' | b':' | b'+' => i += 1,
            _ if !stack[top].list && stack[top].expect_key => {
                // A key: words, quoted strings and dots up to a separator.
                let mut key = String::new();
                while let Some(&k) = b.get(i) {
                    match k {
                        b'=' | b':' | b'{' | b'\n' | b',' | b'}' | b'#' => break,
                        b'+' if b.get(i + 1) == Some(&b'=') => break,
                        b'"' => {
                            let end = b[i + 1..]
                                .iter()
                                .position(|&x| x == b'"' || x == b'\n')
                                .map_or(b.len(), |p| i + 1 + p);
                            key.push_str(text.get(i + 1..end).unwrap_or(""));
                            i = (end + 1).min(b.len());
                        }
                        b' ' | b'\t' | b'\r' => i += 1,
                        _ => {
                            let ch = text.get(i..).and_then(|s| s.chars().next()).unwrap_or(' ');
                            key.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                let f = &mut stack[top];
                f.key = Some(join(&f.path, &key));
                f.expect_key = false;
            }
            b'"' => {
                // A quoted value: skip it (escaped quotes included), or a raw string.
                if b.get(i..i + 3) == Some(b"\"\"\"") {
                    let body = i + 3;
                    let len = find(&b[body..], b"\"\"\"").unwrap_or(b.len() - body);
                    line += b[body..body + len].iter().filter(|&&x| x == b'\n').count();
                    i = body + len + 3;
                } else {
                    i += 1;
                    while let Some(&x) = b.get(i) {
                        match x {
                            b'"' | b'\n' => break,
                            b'\\' => i += 2,
                            _ => i += 1,
                        }
                    }
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    let self_ref = |k: &str, t: &str, line: usize| {
        ConfigError::new(
            "",
            format!(
                "malformed HOCON at line {line}: the substitution ${{{t}}} refers to the key \
                 `{k}` that it defines; a key cannot be defined in terms of itself"
            ),
        )
    };
    for (k, t, line) in &edges {
        if related(k, t) {
            return Err(self_ref(k, t, *line));
        }
    }
    // A cycle through several keys: follow the references from each key.
    for (start, _, line) in &edges {
        let mut seen: Vec<&str> = vec![start];
        let mut frontier: Vec<&str> = vec![start];
        while let Some(k) = frontier.pop() {
            for (from, to, _) in &edges {
                if related(from, k) || from == k {
                    if related(to, start) {
                        return Err(ConfigError::new(
                            "",
                            format!(
                                "malformed HOCON at line {line}: the substitutions for `{start}` \
                                 lead back to `{start}` (a cycle, through `{from}` = ${{{to}}}); \
                                 a key cannot be defined in terms of itself"
                            ),
                        ));
                    }
                    if !seen.contains(&to.as_str()) && seen.len() < 1024 {
                        seen.push(to);
                        frontier.push(to);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether `c` can be part of an unquoted word (so that `include` inside `xinclude` is not
/// the directive).
fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// Index of the newline that ends the comment starting at `i` (or the end of the text).
fn skip_comment(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| i + p)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of four ASCII hex digits at `at`, if there are four.
fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc * 16 + v)
    })
}

/// Runs the `hocon` parser on a thread with a large stack and turns both its errors and
/// its panics into [`ConfigError`]s.
fn parse_guarded<F>(parse: F) -> Result<Hocon, ConfigError>
where
    F: FnOnce() -> Result<Hocon, hocon::Error> + Send,
{
    let guarded = move || {
        crate::quiet::catch(parse).map_err(|payload| {
            let what = crate::quiet::take_last_panic()
                .unwrap_or_else(|| crate::quiet::payload_text(payload.as_ref()));
            ConfigError::new(
                "",
                format!("malformed HOCON: the parser failed on this text ({what})"),
            )
        })
    };
    // A scoped thread may borrow the text. If no thread can be started, parse here.
    let job = std::sync::Mutex::new(Some(guarded));
    let take = || job.lock().unwrap_or_else(|p| p.into_inner()).take();
    let outcome = std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("omnipaxos-hocon".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(s, || take().map(|f| f()));
        spawned.ok().and_then(|handle| handle.join().ok().flatten())
    });
    let outcome = outcome.or_else(|| take().map(|f| f())).unwrap_or_else(|| {
        Err(ConfigError::new(
            "",
            "malformed HOCON: the parser thread failed",
        ))
    });
    outcome?.map_err(hocon_error)
}

/// A `hocon` loader error as a [`ConfigError`].
fn hocon_error(e: hocon::Error) -> ConfigError {
    let message = match e {
        hocon::Error::Parse | hocon::Error::Deserialization { .. } => {
            "malformed HOCON: the text could not be parsed (look for unbalanced braces or \
             brackets, a missing `=` or `:`, an unterminated string, or an invalid escape)"
                .to_string()
        }
        hocon::Error::KeyNotFound { key } => format!(
            "the substitution ${{{key}}} refers to a key or environment variable that is not set"
        ),
        hocon::Error::IncludeNotAllowedFromStr => {
            "`include` is only supported when loading from a file".to_string()
        }
        hocon::Error::Include { path } | hocon::Error::File { path } => {
            format!("cannot read the included file {path}")
        }
        hocon::Error::TooManyIncludes => "includes are nested too deeply".to_string(),
        hocon::Error::DisabledExternalUrl => {
            "`include url(...)` is not supported; include local files".to_string()
        }
        other => format!("malformed HOCON: {other}"),
    };
    ConfigError::new("", message)
}

/// Turns the parsed document into a validated [`Config`].
fn build(doc: &Hocon) -> Result<Config, ConfigError> {
    let Hocon::Hash(root) = doc else {
        return Err(ConfigError::new(
            "",
            format!(
                "the configuration must be an object of keys such as {{ pid = 2, peers = [1, 3] }}, \
                 found {}",
                describe(doc)
            ),
        ));
    };
    let mut cfg = Config::default();
    let mut pid = None;
    let mut peers = None;
    let mut nodes = None;
    for (key, value) in root {
        if matches!(value, Hocon::Null) {
            continue; // `key = null` means "not set"
        }
        let key = key.as_str();
        match key {
            "config_id" => cfg.config_id = as_u32(key, value)?,
            "pid" => pid = Some(as_u64(key, value, "a positive integer (this server's id)")?),
            "peers" => peers = Some(as_pid_list(key, value)?),
            "nodes" => nodes = Some(as_pid_list(key, value)?),
            "leader_priority" => cfg.leader_priority = as_u32(key, value)?,
            "election_tick_timeout" => {
                cfg.election_tick_timeout = as_u64(key, value, "a number of ticks")?
            }
            "resend_tick_timeout" => {
                cfg.resend_tick_timeout = as_u64(key, value, "a number of ticks")?
            }
            "buffer_size" => cfg.buffer_size = as_usize(key, value, "a number of entries")?,
            "batch_size" => cfg.batch_size = as_usize(key, value, "a number of entries")?,
            "max_message_bytes" => cfg.max_message_bytes = as_byte_size(key, value)?,
            "log_file_path" => cfg.log_file_path = Some(as_path(key, value)?),
            "storage" => cfg.storage = as_storage(value)?,
            _ => return Err(unknown_key(key, key, ROOT_KEYS)),
        }
    }
    let Some(pid) = pid else {
        let hint = if root.is_empty() {
            "; the text contains no keys at all (is it empty, or not HOCON?)"
        } else {
            ", e.g. pid = 2"
        };
        return Err(ConfigError::new(
            "pid",
            format!("missing: this server's id (a positive integer) is required{hint}"),
        ));
    };
    cfg.pid = pid;
    cfg.peers = match (peers, nodes) {
        (Some(peers), None) => peers,
        (peers, Some(nodes)) => {
            let from_nodes = peers_from_nodes(pid, &nodes)?;
            if let Some(peers) = peers {
                let (mut a, mut b) = (peers.clone(), from_nodes.clone());
                a.sort_unstable();
                b.sort_unstable();
                if a != b {
                    return Err(ConfigError::new(
                        "peers",
                        format!(
                            "disagrees with `nodes`: peers is {peers:?} but nodes without this \
                             server's pid {pid} is {from_nodes:?} (give only one of the two)"
                        ),
                    ));
                }
                peers
            } else {
                from_nodes
            }
        }
        (None, None) => {
            return Err(ConfigError::new(
                "peers",
                "missing: list the other servers, e.g. peers = [1, 3], or all servers \
                 including this one, e.g. nodes = [1, 2, 3]",
            ))
        }
    };
    cfg.validate()?;
    Ok(cfg)
}

/// `nodes` minus `pid`, after checking that `nodes` contains `pid` and no duplicates.
fn peers_from_nodes(pid: NodeId, nodes: &[NodeId]) -> Result<Vec<NodeId>, ConfigError> {
    let mut sorted = nodes.to_vec();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(ConfigError::new(
            "nodes",
            format!("pid {} is listed more than once", w[0]),
        ));
    }
    if !nodes.contains(&pid) {
        return Err(ConfigError::new(
            "nodes",
            format!(
                "must contain this server's own pid {pid} (nodes lists every server of the \
                 configuration; peers lists only the others)"
            ),
        ));
    }
    Ok(nodes.iter().copied().filter(|&n| n != pid).collect())
}

fn as_storage(value: &Hocon) -> Result<StorageConfig, ConfigError> {
    let Hocon::Hash(map) = value else {
        return Err(ConfigError::new(
            "storage",
            format!(
                "expected an object such as {{ type = persistent, path = \"/var/lib/omnipaxos\" }}, \
                 found {}",
                describe(value)
            ),
        ));
    };
    let mut persistent = None;
    let mut path = None;
    let mut sync = None;
    let mut segment_bytes = None;
    // The first key set that only applies to persistent storage, for the error below.
    let mut persistent_only = None;
    for (key, value) in map {
        if matches!(value, Hocon::Null) {
            continue;
        }
        let dotted = format!("storage.{key}");
        match key.as_str() {
            "type" => {
                let word = as_word(&dotted, value, &["memory", "persistent"])?;
                persistent = Some(word == "persistent");
            }
            "path" => path = Some(as_path(&dotted, value)?),
            "sync" => {
                sync = Some(match as_word(&dotted, value, &["always", "never"])? {
                    "never" => SyncPolicy::Never,
                    _ => SyncPolicy::Always,
                })
            }
            "segment_bytes" => segment_bytes = Some(as_byte_size(&dotted, value)?),
            _ => return Err(unknown_key(&dotted, key, STORAGE_KEYS)),
        }
        if key != "type" && persistent_only.is_none() {
            persistent_only = Some(dotted);
        }
    }
    match persistent {
        Some(true) => Ok(StorageConfig::Persistent {
            path: path.ok_or_else(|| {
                ConfigError::new(
                    "storage.path",
                    "missing: persistent storage needs the directory of its files, e.g. \
                     path = \"/var/lib/omnipaxos/node2\"",
                )
            })?,
            sync: sync.unwrap_or_default(),
            segment_bytes: segment_bytes.unwrap_or(DEFAULT_SEGMENT_BYTES),
        }),
        explicit => {
            match persistent_only {
                // Silently keeping the log in memory when the user wrote a path would lose
                // data at the first restart.
                Some(key) => {
                    Err(ConfigError::new(
                        key,
                        format!(
                    "only applies to persistent storage, but storage.type is memory{}; set \
                     storage.type = persistent to keep the log on disk",
                    if explicit.is_none() { " (the default)" } else { "" }
                ),
                    ))
                }
                None => Ok(StorageConfig::Memory),
            }
        }
    }
}

/// One of `words`, written as a string.
fn as_word<'w>(key: &str, value: &Hocon, words: &[&'w str]) -> Result<&'w str, ConfigError> {
    if let Hocon::String(s) = value {
        if let Some(w) = words.iter().find(|w| **w == s.as_str()) {
            return Ok(w);
        }
    }
    Err(ConfigError::new(
        key,
        format!(
            "expected one of {}, found {}",
            words.join(" | "),
            describe(value)
        ),
    ))
}

fn as_path(key: &str, value: &Hocon) -> Result<PathBuf, ConfigError> {
    match value {
        Hocon::String(s) if s.is_empty() => Err(ConfigError::new(
            key,
            "expected a path, found an empty string",
        )),
        Hocon::String(s) => Ok(PathBuf::from(s)),
        other => Err(ConfigError::new(
            key,
            format!("expected a path (a string), found {}", describe(other)),
        )),
    }
}

fn as_pid_list(key: &str, value: &Hocon) -> Result<Vec<NodeId>, ConfigError> {
    let Hocon::Array(items) = value else {
        return Err(ConfigError::new(
            key,
            format!(
                "expected a list of pids such as [1, 3], found {}",
                describe(value)
            ),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            as_u64(key, item, "a pid (a positive integer)").map_err(|e| ConfigError {
                message: format!("element {i} of the list: {}", e.message),
                key: e.key,
            })
        })
        .collect()
}

fn as_u32(key: &str, value: &Hocon) -> Result<u32, ConfigError> {
    let n = as_u64(key, value, "an integer from 0 to 4294967295")?;
    u32::try_from(n).map_err(|_| {
        ConfigError::new(
            key,
            format!("expected an integer from 0 to 4294967295, found {n}, which is too large"),
        )
    })
}

fn as_usize(key: &str, value: &Hocon, what: &str) -> Result<usize, ConfigError> {
    let n = as_u64(key, value, what)?;
    usize::try_from(n).map_err(|_| {
        ConfigError::new(
            key,
            format!("expected {what}, found {n}, which is too large for this platform"),
        )
    })
}

/// A non-negative integer: an integer, an integral number, or a string of digits.
fn as_u64(key: &str, value: &Hocon, what: &str) -> Result<u64, ConfigError> {
    let err = |found: String| ConfigError::new(key, format!("expected {what}, found {found}"));
    match value {
        Hocon::Integer(i) => u64::try_from(*i).map_err(|_| err(format!("{i}, which is negative"))),
        Hocon::Real(f) => real_to_u64(*f).map_err(err),
        Hocon::String(s) => {
            let t = s.trim();
            if let Ok(n) = t.parse::<u64>() {
                Ok(n)
            } else if t.parse::<i128>().is_ok() {
                Err(err(format!(
                    "{t}, which is negative or too large for 64 bits"
                )))
            } else {
                Err(err(describe(value)))
            }
        }
        other => Err(err(describe(other))),
    }
}

/// An integral floating-point number that is exactly representable as a `u64`.
fn real_to_u64(f: f64) -> Result<u64, String> {
    /// 2^53: every integer up to here is exact in an f64.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if !f.is_finite() {
        Err("a number too large to represent".into())
    } else if f.fract() != 0.0 {
        Err(format!("{f}, which is not an integer"))
    } else if f < 0.0 {
        Err(format!("{f}, which is negative"))
    } else if f > EXACT {
        Err(format!(
            "{f}, which is too large to be read exactly as a number; write integers above \
             9223372036854775807 as a quoted string, e.g. \"18446744073709551615\""
        ))
    } else {
        // Exact: integral and within 2^53.
        Ok(f as u64)
    }
}

/// A size in bytes: an integer, or a string with a HOCON size unit such as "64 MiB".
fn as_byte_size(key: &str, value: &Hocon) -> Result<usize, ConfigError> {
    const WHAT: &str = "a size in bytes (an integer, or a string such as \"64 MiB\")";
    let n = match value {
        Hocon::String(s) => parse_size(s).ok_or_else(|| {
            ConfigError::new(key, format!("expected {WHAT}, found {}", describe(value)))
        })?,
        other => as_u64(key, other, WHAT)?,
    };
    usize::try_from(n).map_err(|_| {
        ConfigError::new(
            key,
            format!("expected {WHAT}, found {n}, which is too large for this platform"),
        )
    })
}

/// Parses "1024", "64 MiB", "512k", "10 MB" (HOCON size format; K, M, G, T and the
/// `Ki`/`KiB`-style units are powers of 1024, `kB`/`KB`/`MB`/... powers of 1000).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let unit = unit.trim_start();
    let unit = unit
        .strip_suffix("bytes")
        .or_else(|| unit.strip_suffix("byte"))
        .map_or(unit, |u| if u.is_empty() { "B" } else { u });
    const KI: u64 = 1 << 10;
    let factor: u64 = match unit {
        "" | "B" | "b" => 1,
        "K" | "k" | "Ki" | "KiB" | "kibi" => KI,
        "kB" | "KB" | "kilo" => 1_000,
        "M" | "m" | "Mi" | "MiB" | "mebi" => KI.pow(2),
        "MB" | "mega" => 1_000_000,
        "G" | "g" | "Gi" | "GiB" | "gibi" => KI.pow(3),
        "GB" | "giga" => 1_000_000_000,
        "T" | "t" | "Ti" | "TiB" | "tebi" => KI.pow(4),
        "TB" | "tera" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn unknown_key(dotted: &str, key: &str, known: &[&str]) -> ConfigError {
    let suggestion = known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("did you mean `{k}`? "))
        .unwrap_or_default();
    ConfigError::new(
        dotted,
        format!(
            "unknown key; {suggestion}the known keys here are: {}",
            known.join(", ")
        ),
    )
}

/// Levenshtein distance (keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A value, for error messages.
fn describe(value: &Hocon) -> String {
    match value {
        Hocon::Integer(i) => format!("the number {i}"),
        Hocon::Real(f) => format!("the number {f}"),
        Hocon::String(s) if s.chars().count() > 60 => {
            let head: String = s.chars().take(60).collect();
            format!("the string {head:?}...")
        }
        Hocon::String(s) => format!("the string {s:?}"),
        Hocon::Boolean(b) => format!("the boolean {b}"),
        Hocon::Array(_) => "a list".into(),
        Hocon::Hash(_) => "an object".into(),
        Hocon::Null => "null".into(),
        Hocon::BadValue(e) => format!("a value that could not be read ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        match from_str(text) {
            Ok(c) => panic!("{text:?} loaded: {c:?}"),
            Err(e) => e,
        }
    }

    /// Asserts that `text` fails on `key` with a message containing every word of `words`.
    #[track_caller]
    fn fails(text: &str, key: &str, words: &[&str]) {
        let e = err(text);
        assert_eq!(e.key, key, "{text:?}: {e}");
        for w in words {
            assert!(e.message.contains(w), "{text:?}: {e} lacks {w:?}");
        }
    }

    const BASE: &str = "pid = 2\npeers = [1, 3]\n";

    fn with(extra: &str) -> String {
        format!("{BASE}{extra}\n")
    }

    #[test]
    fn seed_example_loads() {
        let c =
            from_str("{ config_id: 1, pid: 2, peers: [1, 3], log_file_path: \"/omnipaxos/logs\" }")
                .unwrap();
        assert_eq!(
            c,
            Config {
                config_id: 1,
                pid: 2,
                peers: vec![1, 3],
                log_file_path: Some(PathBuf::from("/omnipaxos/logs")),
                ..Config::default()
            }
        );
        let n = from_str(
            "{ config_id: 1, pid: 2, nodes: [1, 2, 3], log_file_path: \"/omnipaxos/logs\" }",
        )
        .unwrap();
        assert_eq!(n, c);
        // Multi-line, without braces, with comments, `=` and unquoted path.
        let m = from_str(
            "# node 2\nconfig_id = 1\npid = 2 // me\npeers = [\n  1,\n  3\n]\nlog_file_path = /omnipaxos/logs\n",
        )
        .unwrap();
        assert_eq!(m, c);
    }

    #[test]
    fn defaults() {
        let c = from_str(BASE).unwrap();
        assert_eq!(
            c,
            Config {
                pid: 2,
                peers: vec![1, 3],
                ..Config::default()
            }
        );
        assert_eq!(c.config_id, 1);
        assert_eq!(c.leader_priority, 0);
        assert_eq!(c.election_tick_timeout, 10);
        assert_eq!(c.resend_tick_timeout, 5);
        assert_eq!(c.buffer_size, 100_000);
        assert_eq!(c.batch_size, 1000);
        assert_eq!(c.max_message_bytes, 64 << 20);
        assert_eq!(c.log_file_path, None);
        assert_eq!(c.storage, StorageConfig::Memory);
        // Persistent storage defaults.
        let c = from_str(&with("storage { type = persistent, path = /var/lib/op }")).unwrap();
        assert_eq!(
            c.storage,
            StorageConfig::Persistent {
                path: PathBuf::from("/var/lib/op"),
                sync: SyncPolicy::Always,
                segment_bytes: 64 << 20,
            }
        );
    }

    #[test]
    fn every_key() {
        let c = from_str(
            r#"
            config_id = 7
            pid = 18446744073709551615   # must be quoted to be exact; see below
            "#,
        );
        assert_eq!(c.unwrap_err().key, "pid");
        let c = from_str(
            r#"
            config_id = 4294967295
            pid = "18446744073709551615"
            peers = [1, "9223372036854775808"]
            leader_priority = 3
            election_tick_timeout = 20
            resend_tick_timeout = 7
            buffer_size = 5000
            batch_size = 64
            max_message_bytes = "16 MiB"
            log_file_path = "/var/log/op.log"
            storage {
                type = persistent
                path = "/data/op"
                sync = never
                segment_bytes = 1048576
            }
            "#,
        )
        .unwrap();
        assert_eq!(
            c,
            Config {
                config_id: u32::MAX,
                pid: u64::MAX,
                peers: vec![1, 1 << 63],
                leader_priority: 3,
                election_tick_timeout: 20,
                resend_tick_timeout: 7,
                buffer_size: 5000,
                batch_size: 64,
                max_message_bytes: 16 << 20,
                log_file_path: Some(PathBuf::from("/var/log/op.log")),
                storage: StorageConfig::Persistent {
                    path: PathBuf::from("/data/op"),
                    sync: SyncPolicy::Never,
                    segment_bytes: 1 << 20,
                },
            }
        );
        // Dotted keys, JSON syntax, memory storage spelled out, explicit nulls.
        let c = from_str(
            r#"{"pid": 2, "nodes": [3, 2, 1], "storage": {"type": "memory"}, "log_file_path": null}"#,
        )
        .unwrap();
        assert_eq!(c.peers, vec![3, 1]);
        assert_eq!(c.storage, StorageConfig::Memory);
        let c = from_str(&with(
            "storage.type = persistent\nstorage.path = x\nstorage.sync = always",
        ))
        .unwrap();
        assert!(matches!(
            c.storage,
            StorageConfig::Persistent {
                sync: SyncPolicy::Always,
                ..
            }
        ));
        // Both peers and nodes, agreeing (in any order).
        let c = from_str("pid = 2, peers = [3, 1], nodes = [1, 2, 3]").unwrap();
        assert_eq!(c.peers, vec![3, 1]);
        // Integral reals and numeric strings.
        let c = from_str(&with(
            "batch_size = 1e3\nbuffer_size = \" 42 \"\nleader_priority = 2.0",
        ))
        .unwrap();
        assert_eq!(
            (c.batch_size, c.buffer_size, c.leader_priority),
            (1000, 42, 2)
        );
    }

    #[test]
    fn sizes() {
        for (text, n) in [
            ("2048", 2048u64),
            ("\"2048\"", 2048),
            ("\"64 MiB\"", 64 << 20),
            ("\"64MiB\"", 64 << 20),
            ("\"2k\"", 2048),
            ("\"2 kB\"", 2000),
            ("\"3 M\"", 3 << 20),
            ("\"1 GB\"", 1_000_000_000),
            ("\"1 G\"", 1 << 30),
            ("\"5000 bytes\"", 5000),
            ("\"5000B\"", 5000),
        ] {
            let c = from_str(&with(&format!("max_message_bytes = {text}"))).unwrap();
            assert_eq!(c.max_message_bytes as u64, n, "{text}");
        }
        for bad in [
            "\"64 XB\"",
            "\"MiB\"",
            "\"1.5 MiB\"",
            "\"-1 MiB\"",
            "\"99999999999 TiB\"",
            "true",
        ] {
            fails(
                &with(&format!("max_message_bytes = {bad}")),
                "max_message_bytes",
                &["expected a size in bytes"],
            );
        }
        fails(
            &with("storage { type = persistent, path = p, segment_bytes = \"lots\" }"),
            "storage.segment_bytes",
            &["expected a size in bytes", "\"lots\""],
        );
    }

    #[test]
    fn missing_required_keys() {
        fails("peers = [1, 3]", "pid", &["missing", "pid = 2"]);
        fails("pid = 2", "peers", &["missing", "peers = [1, 3]", "nodes"]);
        fails("pid = null\npeers = [1]", "pid", &["missing"]);
        fails(
            "pid = 2\nstorage { type = persistent }",
            "storage.path",
            &["missing", "persistent"],
        );
    }

    #[test]
    fn empty_and_garbage() {
        for text in ["", "   \n\n", "# only a comment\n", "{}"] {
            fails(text, "pid", &["missing", "no keys at all"]);
        }
        for text in [
            "}}}{{ not hocon",
            "[1, 2]",
            "pid = 2, peers = [1, 3], oops",
            "a = {",
            "pid = \"2",
        ] {
            let e = err(text);
            assert_eq!(e.key, "", "{text:?}: {e}");
            assert!(e.message.contains("malformed HOCON"), "{text:?}: {e}");
        }
    }

    #[test]
    fn unknown_keys() {
        fails(
            &with("peer = [1]"),
            "peer",
            &["unknown key", "did you mean `peers`", "config_id"],
        );
        fails(&with("foo { bar = 1 }"), "foo", &["unknown key"]);
        fails(
            &with("election_timeout = 3"),
            "election_timeout",
            &["unknown key"],
        );
        fails(
            &with("storage { type = persistent, path = p, paht = q }"),
            "storage.paht",
            &["unknown key", "did you mean `path`", "segment_bytes"],
        );
        fails(
            &with("storage.kind = memory"),
            "storage.kind",
            &["unknown key", "type"],
        );
    }

    #[test]
    fn ill_typed_keys() {
        fails(
            "pid = \"two\"\npeers = [1]",
            "pid",
            &["expected a positive integer", "\"two\""],
        );
        fails(
            "pid = two\npeers = [1]",
            "pid",
            &["expected a positive integer", "\"two\""],
        );
        fails("pid = true\npeers = [1]", "pid", &["expected", "boolean"]);
        fails("pid = [2]\npeers = [1]", "pid", &["expected", "a list"]);
        fails(
            "pid = { a = 1 }\npeers = [1]",
            "pid",
            &["expected", "an object"],
        );
        fails(
            "pid = -2\npeers = [1]",
            "pid",
            &["expected", "-2", "negative"],
        );
        fails("pid = \"-2\"\npeers = [1]", "pid", &["negative"]);
        fails(
            "pid = 2.5\npeers = [1]",
            "pid",
            &["expected", "2.5", "not an integer"],
        );
        fails("pid = 1e300\npeers = [1]", "pid", &["too large", "quoted"]);
        fails("pid = 1e400\npeers = [1]", "pid", &["too large"]);
        fails(
            "pid = \"18446744073709551616\"\npeers = [1]",
            "pid",
            &["too large for 64 bits"],
        );
        fails(
            "pid = 2\npeers = 3",
            "peers",
            &["expected a list of pids", "the number 3"],
        );
        fails(
            "pid = 2\npeers = [1, two]",
            "peers",
            &["element 1", "\"two\""],
        );
        fails(
            "pid = 2\npeers = [1, -3]",
            "peers",
            &["element 1", "negative"],
        );
        fails(
            "pid = 2\nnodes = \"1,2,3\"",
            "nodes",
            &["expected a list of pids"],
        );
        fails(
            &with("config_id = 4294967296"),
            "config_id",
            &["4294967296", "too large"],
        );
        fails(&with("config_id = -1"), "config_id", &["negative"]);
        fails(
            &with("leader_priority = 5000000000"),
            "leader_priority",
            &["too large"],
        );
        fails(
            &with("election_tick_timeout = x"),
            "election_tick_timeout",
            &["ticks"],
        );
        fails(
            &with("resend_tick_timeout = 1.5"),
            "resend_tick_timeout",
            &["not an integer"],
        );
        fails(&with("buffer_size = -1"), "buffer_size", &["negative"]);
        fails(&with("batch_size = [1]"), "batch_size", &["a list"]);
        fails(
            &with("log_file_path = 12"),
            "log_file_path",
            &["expected a path", "12"],
        );
        fails(&with("log_file_path = \"\""), "log_file_path", &["empty"]);
        fails(
            &with("storage = persistent"),
            "storage",
            &["expected an object", "persistent"],
        );
        fails(
            &with("storage { type = disk }"),
            "storage.type",
            &["memory | persistent", "\"disk\""],
        );
        fails(
            &with("storage { type = persistent, path = p, sync = sometimes }"),
            "storage.sync",
            &["always | never", "\"sometimes\""],
        );
        fails(
            &with("storage { type = persistent, path = [1] }"),
            "storage.path",
            &["a list"],
        );
    }

    #[test]
    fn persistent_only_keys_need_persistent_storage() {
        fails(
            &with("storage { path = /data }"),
            "storage.path",
            &["(the default)", "persistent"],
        );
        fails(
            &with("storage { type = memory, sync = never }"),
            "storage.sync",
            &["storage.type is memory;", "persistent"],
        );
    }

    #[test]
    fn nodes_and_peers() {
        fails(
            "pid = 4\nnodes = [1, 2, 3]",
            "nodes",
            &["must contain", "pid 4"],
        );
        fails("pid = 2\nnodes = [1, 2, 2]", "nodes", &["more than once"]);
        fails(
            "pid = 2\npeers = [1]\nnodes = [1, 2, 3]",
            "peers",
            &["disagrees with `nodes`", "[1]", "[1, 3]"],
        );
        fails(
            "pid = 2\nnodes = [2]",
            "peers",
            &["at least one other server"],
        );
    }

    #[test]
    fn validation_runs() {
        fails("pid = 0\npeers = [1]", "pid", &["positive"]);
        fails("pid = 2\npeers = []", "peers", &["at least one"]);
        fails("pid = 2\npeers = [1, 2]", "peers", &["own pid"]);
        fails("pid = 2\npeers = [1, 1]", "peers", &["more than once"]);
        fails(
            &with("election_tick_timeout = 0"),
            "election_tick_timeout",
            &["at least 2"],
        );
        fails(
            &with("max_message_bytes = 10"),
            "max_message_bytes",
            &["at least 1024"],
        );
        fails(
            &with("storage { type = persistent, path = p, segment_bytes = 100 }"),
            "storage.segment_bytes",
            &["at least 4096"],
        );
    }

    #[test]
    fn substitutions() {
        let c = from_str("base = 1\npid = 2\npeers = [${base}, 3]").unwrap_err();
        // `base` is not a key of ours: substitution sources must live under known keys
        // or in the environment.
        assert_eq!(c.key, "base");
        let c = from_str("pid = 2\nnodes = [1, 2, 3]\npeers = ${nodes}").unwrap_err();
        assert_eq!(c.key, "peers");
        fails(
            "pid = ${OMNIPAXOS_SURELY_UNSET_VARIABLE}",
            "",
            &["OMNIPAXOS_SURELY_UNSET_VARIABLE", "not set"],
        );
        fails("include \"other.conf\"\npid = 2", "", &["include", "file"]);
        // The "override from the environment if set" idiom.
        let c =
            from_str("pid = 2\npid = ${?OMNIPAXOS_SURELY_UNSET_VARIABLE}\npeers = [1]").unwrap();
        assert_eq!(c.pid, 2);
    }

    #[test]
    fn parser_crashes_are_errors() {
        // The hocon crate panics on non-ASCII text outside quotes and on a `\u` escape
        // whose four bytes end inside a multi-byte character; it silently drops other bad
        // `\u` escapes. All are errors here, with the line.
        fails(
            "pid = 2\npeers = [1]\nlog_file_path = /var/été",
            "",
            &["line 3", "non-ASCII", "quote"],
        );
        fails("é = 1", "", &["line 1", "non-ASCII"]);
        for text in [
            r#"log_file_path = "\uZZZZ""#,
            r#"log_file_path = "\u0éé""#,
            r#"log_file_path = "\u12""#,
            r#"log_file_path = "\u""#,
        ] {
            fails(
                &format!("{BASE}{text}"),
                "",
                &["line 3", "\\u escape", "four hex digits"],
            );
        }
        fails(
            &with(r#"log_file_path = "\uD800x""#),
            "",
            &["line 3", "high surrogate"],
        );
        fails(
            &with(r#"log_file_path = "\uDC00""#),
            "",
            &["line 3", "low surrogate"],
        );
        fails("pid = 2\0 peers = [1]", "", &["control character"]);
        // Valid escapes and non-ASCII text in quotes are fine.
        let c = from_str(&with(
            r#"log_file_path = "/var/\u00e9t\u00E9/😀\uD83D\uDE00/\"q\"/\\""#,
        ))
        .unwrap();
        assert_eq!(
            c.log_file_path.unwrap(),
            PathBuf::from("/var/été/😀😀/\"q\"/\\")
        );
        // Comments and raw strings are not checked for escapes.
        let c = from_str(&with(
            "# C:\\users\\é\nlog_file_path = \"\"\"C:\\users\\x\"\"\"",
        ))
        .unwrap();
        assert_eq!(c.log_file_path.unwrap(), PathBuf::from("C:\\users\\x"));
        let c = from_str(&with("log_file_path = \"\"\"/var/été\"\"\"")).unwrap();
        assert_eq!(c.log_file_path.unwrap(), PathBuf::from("/var/été"));
        // A panic inside the parser itself still becomes an error.
        let e = parse_guarded(|| -> Result<Hocon, hocon::Error> { panic!("boom") }).unwrap_err();
        assert!(
            e.message.contains("malformed HOCON") && e.message.contains("boom"),
            "{e}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep_objects = format!("{}{}", "a { ".repeat(5000), "}".repeat(5000));
        let deep_lists = format!("pid = {}1{}", "[".repeat(5000), "]".repeat(5000));
        let deep_keys = format!("{} = 1", vec!["a"; 5000].join("."));
        for text in [deep_objects, deep_lists, deep_keys] {
            fails(&text, "", &["nested more than 64"]);
        }
        // 64 levels are fine (and end in an unknown key).
        let ok_depth = format!("a {}{{ b = 1 {}", "{ a ".repeat(62), "}".repeat(63));
        assert_eq!(err(&ok_depth).key, "a");
    }

    #[test]
    fn odd_but_valid_text() {
        // CRLF line ends, a byte-order mark, tabs, blank lines with spaces.
        let c = from_str("\u{feff}pid = 2\r\n\tpeers = [1, 3]\r\n").unwrap();
        assert_eq!(c.peers, vec![1, 3]);
        let c = from_str("\n  \n  pid = 2\n  \n  peers = [1, 3]\n  \n\t").unwrap();
        assert_eq!(c.peers, vec![1, 3]);
        // Later keys override earlier ones, objects merge.
        let c = from_str(
            "pid = 1\npid = 2\npeers = [1]\nstorage.type = persistent\nstorage { path = p }",
        )
        .unwrap();
        assert_eq!(c.pid, 2);
        assert!(matches!(c.storage, StorageConfig::Persistent { .. }));
    }

    #[test]
    fn too_long_text() {
        let text = format!("{BASE}# {}", "x".repeat(MAX_TEXT_BYTES));
        fails(&text, "", &["at most"]);
    }

    #[test]
    fn files() {
        let missing = Path::new("/nonexistent/omnipaxos/node2.conf");
        let e = from_file(missing).unwrap_err();
        assert_eq!(e.key, "");
        assert!(
            e.message.contains("/nonexistent/omnipaxos/node2.conf"),
            "{e}"
        );
        assert!(e.message.contains("cannot read"), "{e}");
        let e = from_file(Path::new("/")).unwrap_err();
        assert!(e.message.contains("directory"), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        // Bytes from the HOCON alphabet, shuffled: the parser must never take the process
        // down, whatever it is given.
        const ALPHABET: &[u8] = b"{}[]()=:,.\"\\$?+#/ \n\tu0aZ9-e";
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..300 {
            let len = (x % 40) as usize;
            let mut s = String::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(ALPHABET[(x % ALPHABET.len() as u64) as usize] as char);
            }
            let _ = from_str(&s);
            let _ = from_str(&format!("{BASE}{s}"));
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("peer", "peers"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(parse_size("64 MiB"), Some(64 << 20));
        assert_eq!(parse_size("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_size("18446744073709551615 k"), None);
    }
}
