//! Writing records as JSON text, straight into a byte buffer. jaq's `Display` goes through
//! `fmt` machinery per character run, which took a third of a file → file pipeline's time;
//! this writes the same text (NaN and infinities become `null`, as jq prints them).

use jaq_json::Val;

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
    use crate::pipeline::jq::parse_json;

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
