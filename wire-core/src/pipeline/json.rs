//! Records as JSON text, both ways, for the file and Kafka connectors' hot path.
//!
//! Writing: jaq's `Display` goes through `fmt` machinery per character run, which took a
//! third of a file → file pipeline's time; [`write_json`] writes the same text (NaN and
//! infinities become `null`, as jq prints them).
//!
//! Reading: jaq's parser (hifijson) grows every string, array and object as it goes and
//! accepts more than JSON (comments, NaN, byte strings). [`parse_strict`] reads standard
//! JSON straight from the input into the same values jaq builds — numbers keep their text
//! as jaq keeps it, a repeated key keeps its first place and last value — and gives up
//! (`None`) on anything else, which then goes to jaq's parser for its answer or its error.

use jaq_json::{Map, Num, Val};

/// Nesting deeper than this goes to jaq's parser (which has its own limit).
const MAX_DEPTH: usize = 128;

/// Parses one standard JSON value (surrounding whitespace allowed), or `None` when `bytes`
/// hold anything else.
pub fn parse_strict(bytes: &[u8]) -> Option<Val> {
    let mut p = Parser {
        s: bytes,
        i: 0,
        shared: bytes::Bytes::copy_from_slice(bytes),
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    (p.i == bytes.len()).then_some(v)
}

/// Parses one JSON value from bytes: standard JSON by [`parse_strict`], anything else by
/// jaq's parser, which takes what it allows beyond JSON or names the problem.
pub fn parse_json(bytes: &[u8]) -> Result<Val, String> {
    if let Some(v) = parse_strict(bytes) {
        return Ok(v);
    }
    jaq_json::read::parse_single(bytes).map_err(|e| format!("invalid JSON: {e}"))
}

/// Whether `text` is one JSON value in UTF-8 (checked without building it: skipping strings
/// does not check their bytes, hence the UTF-8 check first). Text it refuses is parsed the
/// usual way, which names the problem (or takes what it allows beyond JSON).
pub fn is_json(text: &[u8]) -> bool {
    std::str::from_utf8(text).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
}

/// Parses one JSON value as [`parse_json`] does, but a number or
/// literal without first copying the text (which strings are kept as slices of).
pub fn parse_value(bytes: &[u8]) -> Option<Val> {
    if let Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') = bytes.first() {
        let mut p = Parser {
            s: bytes,
            i: 0,
            shared: bytes::Bytes::new(),
        };
        if let Some(v) = p.value(0) {
            if p.i == bytes.len() {
                return Some(v);
            }
        }
    }
    parse_json(bytes).ok()
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// A copy of the input that strings without escapes are slices of: one allocation per
    /// record for all of them instead of one per string (each string still has jaq's box).
    shared: bytes::Bytes,
}

/// A string as [`Parser::string`] found it.
enum Text {
    /// Ends (before its closing quote) at this offset, and needs no decoding.
    Raw(usize),
    Decoded(Vec<u8>),
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn lit(&mut self, word: &[u8], v: Val) -> Option<Val> {
        let end = self.i + word.len();
        (self.s.get(self.i..end)? == word).then(|| {
            self.i = end;
            v
        })
    }

    fn value(&mut self, depth: usize) -> Option<Val> {
        match self.peek()? {
            b'{' if depth < MAX_DEPTH => self.object(depth + 1),
            b'[' if depth < MAX_DEPTH => self.array(depth + 1),
            b'"' => self.string_val(),
            b'n' => self.lit(b"null", Val::Null),
            b't' => self.lit(b"true", Val::Bool(true)),
            b'f' => self.lit(b"false", Val::Bool(false)),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: usize) -> Option<Val> {
        let mut map = Map::with_capacity_and_hasher(8, Default::default());
        self.items(b'}', |p| {
            if p.peek()? != b'"' {
                return None;
            }
            let key = p.string_val()?;
            p.ws();
            if p.peek()? != b':' {
                return None;
            }
            p.i += 1;
            p.ws();
            map.insert(key, p.value(depth)?);
            Some(())
        })?;
        Some(Val::obj(map))
    }

    fn array(&mut self, depth: usize) -> Option<Val> {
        let mut items = Vec::new();
        self.items(b']', |p| {
            items.push(p.value(depth)?);
            Some(())
        })?;
        Some(Val::Arr(items.into()))
    }

    /// The comma-separated items of an object or array (the cursor on its opening bracket),
    /// each read by `item`, up to and past `close`.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            return Some(());
        }
        loop {
            item(self)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string value: a slice of the shared input when it has no escapes.
    fn string_val(&mut self) -> Option<Val> {
        let start = self.i + 1;
        match self.string()? {
            Text::Raw(end) => Some(Val::TStr(Box::new(self.shared.slice(start..end)))),
            Text::Decoded(bytes) => Some(Val::utf8_str(bytes)),
        }
    }

    /// A string (the cursor on its opening quote): where it ends if it has no escapes, else
    /// its decoded bytes. Control characters, lone
    /// surrogates and bytes that are not UTF-8 are left to jaq.
    fn string(&mut self) -> Option<Text> {
        self.i += 1;
        let start = self.i;
        loop {
            let b = *self.s.get(self.i)?;
            match b {
                b'"' => {
                    std::str::from_utf8(&self.s[start..self.i]).ok()?;
                    self.i += 1;
                    return Some(Text::Raw(self.i - 1));
                }
                b'\\' => break,
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        // Escapes: copy what came before, then decode the rest.
        let mut out = self.s[start..self.i].to_vec();
        loop {
            let b = *self.s.get(self.i)?;
            self.i += 1;
            match b {
                b'"' => {
                    std::str::from_utf8(&out).ok()?;
                    return Some(Text::Decoded(out));
                }
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            let code =
                                u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                            self.i += 4;
                            char::from_u32(code)?
                        }
                        _ => return None,
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                0..=0x1f => return None,
                _ => out.push(b),
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`: an integer as jaq makes it (machine
    /// or big), anything else as jaq keeps it (its decimal text).
    fn number(&mut self) -> Option<Val> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while let Some(b'0'..=b'9') = p.peek() {
                p.i += 1;
            }
            p.i > from
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        if !digits(self) || (self.s[int_start] == b'0' && self.i - int_start > 1) {
            return None;
        }
        let mut int = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            int = false;
            if !digits(self) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            int = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        // Only ASCII was consumed.
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        Some(Val::Num(if int {
            Num::from_str_radix(text, 10)?
        } else {
            Num::Dec(jaq_json::Rc::new(text.to_string()))
        }))
    }
}

/// The members of the JSON object that is all of `text` (whitespace around it allowed), for
/// a step that reads or changes a few fields of a record kept as text: pushes each member's
/// key (the bytes between its quotes) and value as ranges of `text` to `out`, and gives the
/// offset of the object's closing brace. `None` when `text` is not one object or a key has
/// an escape (two spellings of one key could then not be told apart). The text is taken to
/// be JSON, as a record's text is (`Record::raw`): the values
/// are skipped over, not checked.
pub fn members(
    text: &[u8],
    out: &mut Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
) -> Option<usize> {
    let s = text;
    let mut i = skip_ws(s, 0);
    if s.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(s, i + 1);
    if s.get(i) == Some(&b'}') {
        return (skip_ws(s, i + 1) == s.len()).then_some(i);
    }
    loop {
        if s.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(s, i)?;
        let key = i + 1..key_end;
        if s[key.clone()].contains(&b'\\') {
            return None;
        }
        i = skip_ws(s, key_end + 1);
        if s.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(s, i + 1);
        let value_end = value_end(s, i)?;
        out.push((key, i..value_end));
        i = skip_ws(s, value_end);
        match s.get(i)? {
            b',' => i = skip_ws(s, i + 1),
            b'}' => return (skip_ws(s, i + 1) == s.len()).then_some(i),
            _ => return None,
        }
    }
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.get(i) {
        i += 1;
    }
    i
}

/// The offset of the closing quote of the string whose opening quote is at `i`.
fn string_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', s.get(j..)?)?;
        if s[j] == b'"' {
            return Some(j);
        }
        j += 2;
    }
}

/// The offset just past the value that starts at `i`.
fn value_end(s: &[u8], i: usize) -> Option<usize> {
    match *s.get(i)? {
        b'"' => string_end(s, i).map(|end| end + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *s.get(j)? {
                    b'"' => j = string_end(s, j)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let end = s[i..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .map_or(s.len(), |n| i + n);
            (end > i).then_some(end)
        }
    }
}

/// Appends `v` as compact JSON to `out`.
pub fn write_json(v: &Val, out: &mut Vec<u8>) {
    match v {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        Val::Num(n) => write_num(n, out),
        Val::TStr(s) | Val::BStr(s) => write_str(s, out),
        Val::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, out);
            }
            out.push(b']');
        }
        Val::Obj(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k {
                    Val::TStr(s) | Val::BStr(s) => write_str(s, out),
                    other => {
                        let mut key = Vec::new();
                        write_json(other, &mut key);
                        write_str(&key, out);
                    }
                }
                out.push(b':');
                write_json(v, out);
            }
            out.push(b'}');
        }
    }
}

/// `v` as compact JSON text.
pub fn to_json(v: &Val) -> String {
    let mut out = Vec::with_capacity(64);
    write_json(v, &mut out);
    // Only UTF-8 is written: strings are checked (or made lossless-lossy) in `write_str`.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn write_num(n: &jaq_json::Num, out: &mut Vec<u8>) {
    use jaq_json::Num;
    match n {
        Num::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Num::Float(f) if f.is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(*f).as_bytes())
        }
        Num::Float(_) => out.extend_from_slice(b"null"),
        Num::BigInt(b) => out.extend_from_slice(b.to_string().as_bytes()),
        Num::Dec(d) => out.extend_from_slice(d.as_bytes()),
    }
}

fn write_str(bytes: &[u8], out: &mut Vec<u8>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => write_escaped(s.as_bytes(), out),
        Err(_) => write_escaped(String::from_utf8_lossy(bytes).as_bytes(), out),
    }
}

/// Writes valid UTF-8 `s` as a JSON string.
fn write_escaped(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// jaq's own parse, for comparison.
    fn jaq(text: &[u8]) -> Option<Val> {
        jaq_json::read::parse_single(text).ok()
    }

    #[test]
    fn strict_parsing_builds_what_jaq_builds_or_leaves_it_to_jaq() {
        let same = [
            r#"{"id":1,"user":"u-1","amount":7.25,"tags":["a","b"],"note":"xxxx"}"#,
            r#"  {"a" : [ 1 , -2 , 3.0 , -0 , 0.5e-3 , 1E+2 , 12345678901234567890123 ] }  "#,
            r#"{"dup":1,"other":2,"dup":3}"#,
            r#"{"esc":"q\"b\\s\/n\n\t\r\b\f\u0041\u00e9\u2713\u0000","ü":"é ✓"}"#,
            r#"[[],{},[{}],null,true,false,"",0]"#,
            r#""just a string""#,
            "-9223372036854775808",
            "9223372036854775808",
            "1e400",
        ];
        for text in same {
            let ours = parse_strict(text.as_bytes()).unwrap_or_else(|| panic!("{text}"));
            let theirs = jaq(text.as_bytes()).unwrap();
            assert_eq!(format!("{ours:?}"), format!("{theirs:?}"), "{text}");
            assert_eq!(to_json(&ours), to_json(&theirs), "{text}");
        }
        // Not standard JSON, or not for the fast reader: jaq decides (some it takes).
        for text in [
            "",
            "  ",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "NaN",
            "Infinity",
            "# c\n1",
            "b\"x\"",
            "\"\\ud83d\\ude00\"",
            "\"\\u12\"",
            "\"\\u+abc\"",
            "\"tab\there\"",
            "\"\\x\"",
            "1 2",
            "nul",
            "truex",
            "{\"a\":1}x",
        ] {
            assert!(parse_strict(text.as_bytes()).is_none(), "{text:?}");
        }
        assert!(parse_strict(b"\"\xff\"").is_none());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse_strict(deep.as_bytes()).is_none());
        // Through parse_json, all of them get jaq's answer.
        let emoji = parse_json("\"\\ud83d\\ude00\"".as_bytes()).unwrap();
        assert_eq!(to_json(&emoji), "\"😀\"");
        assert!(parse_json(b"[1,]").is_err());
    }

    #[test]
    fn writes_what_jaq_displays_for_json_values() {
        for text in [
            r#"{"id":1,"amount":7.5,"name":"a \"quoted\"\n\tline\\","tags":["x",null,true,false],"n":-3,"e":1e300,"big":123456789012345678901234567890}"#,
            r#"[[],{},"\u0001\u001f",0.1,"é ✓"]"#,
        ] {
            let v = parse_json(text.as_bytes()).unwrap();
            assert_eq!(to_json(&v), v.to_string(), "{text}");
            let back: serde_json::Value = serde_json::from_str(&to_json(&v)).unwrap();
            let orig: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(back, orig);
        }
    }
}
