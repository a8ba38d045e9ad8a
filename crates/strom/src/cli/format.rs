//! kcat-like format strings for `strom consume --format`.
//!
//! `%t` topic, `%p` partition, `%o` offset, `%k` key, `%v` (or kcat's `%s`)
//! value, `%T` timestamp (ms), `%h` headers (`k=v,k2=v2`), `%K` key length,
//! `%S` value length (-1 for null), `%%` a percent sign; escapes `\n`,
//! `\r`, `\t`, `\0`, `\\`.

use bytes::Bytes;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
    KeyLen,
    ValueLen,
}

/// A parsed format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    pieces: Vec<Piece>,
}

/// The fields of one record, as the format sees them.
pub struct View<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a Bytes>,
    pub value: Option<&'a Bytes>,
    pub headers: &'a [(String, Option<Bytes>)],
}

impl Format {
    pub fn parse(spec: &str) -> Result<Format, String> {
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        let mut chars = spec.chars();
        let push = |pieces: &mut Vec<Piece>, lit: &mut Vec<u8>, p: Piece| {
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(lit)));
            }
            pieces.push(p);
        };
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let p = match chars.next() {
                        Some('t') => Piece::Topic,
                        Some('p') => Piece::Partition,
                        Some('o') => Piece::Offset,
                        Some('k') => Piece::Key,
                        Some('v') | Some('s') => Piece::Value,
                        Some('T') => Piece::Timestamp,
                        Some('h') => Piece::Headers,
                        Some('K') => Piece::KeyLen,
                        Some('S') => Piece::ValueLen,
                        Some('%') => {
                            lit.push(b'%');
                            continue;
                        }
                        Some(other) => {
                            return Err(format!(
                                "unknown format token %{other} (known: %t %p %o %k %v %s %T %h %K %S %%)"
                            ))
                        }
                        None => return Err("format ends with a lone %".to_string()),
                    };
                    push(&mut pieces, &mut lit, p);
                }
                '\\' => match chars.next() {
                    Some('n') => lit.push(b'\n'),
                    Some('r') => lit.push(b'\r'),
                    Some('t') => lit.push(b'\t'),
                    Some('0') => lit.push(0),
                    Some('\\') => lit.push(b'\\'),
                    Some(other) => {
                        lit.push(b'\\');
                        let mut b = [0u8; 4];
                        lit.extend_from_slice(other.encode_utf8(&mut b).as_bytes());
                    }
                    None => lit.push(b'\\'),
                },
                c => {
                    let mut b = [0u8; 4];
                    lit.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(Format { pieces })
    }

    /// Appends the rendering of `v` to `out`.
    pub fn render(&self, v: &View<'_>, out: &mut Vec<u8>) {
        use std::io::Write;
        for p in &self.pieces {
            // Writes to a Vec cannot fail.
            let _ = match p {
                Piece::Literal(b) => {
                    out.extend_from_slice(b);
                    Ok(())
                }
                Piece::Topic => {
                    out.extend_from_slice(v.topic.as_bytes());
                    Ok(())
                }
                Piece::Partition => write!(out, "{}", v.partition),
                Piece::Offset => write!(out, "{}", v.offset),
                Piece::Timestamp => write!(out, "{}", v.timestamp),
                Piece::Key => {
                    if let Some(k) = v.key {
                        out.extend_from_slice(k);
                    }
                    Ok(())
                }
                Piece::Value => {
                    if let Some(val) = v.value {
                        out.extend_from_slice(val);
                    }
                    Ok(())
                }
                Piece::KeyLen => write!(out, "{}", v.key.map_or(-1, |k| k.len() as i64)),
                Piece::ValueLen => write!(out, "{}", v.value.map_or(-1, |k| k.len() as i64)),
                Piece::Headers => {
                    for (i, (k, hv)) in v.headers.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(k.as_bytes());
                        out.push(b'=');
                        if let Some(hv) = hv {
                            out.extend_from_slice(hv);
                        }
                    }
                    Ok(())
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(
        fmt: &str,
        key: Option<&str>,
        value: Option<&str>,
        headers: &[(&str, Option<&str>)],
    ) -> String {
        let key = key.map(|k| Bytes::copy_from_slice(k.as_bytes()));
        let value = value.map(|k| Bytes::copy_from_slice(k.as_bytes()));
        let headers: Vec<(String, Option<Bytes>)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                )
            })
            .collect();
        let view = View {
            topic: "orders",
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_123,
            key: key.as_ref(),
            value: value.as_ref(),
            headers: &headers,
        };
        let mut out = Vec::new();
        Format::parse(fmt).unwrap().render(&view, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_every_token() {
        assert_eq!(
            render("%k\\t%v\\n", Some("k1"), Some("v1"), &[]),
            "k1\tv1\n"
        );
        assert_eq!(
            render("%t [%p] @%o %T: %s\n", None, Some("hi"), &[]),
            "orders [2] @41 1700000000123: hi\n"
        );
        assert_eq!(render("%K %S|%k|%v|", None, None, &[]), "-1 -1|||");
        assert_eq!(render("%K %S", Some("abc"), Some(""), &[]), "3 0");
        assert_eq!(
            render(
                "%h",
                None,
                None,
                &[("a", Some("1")), ("b", None), ("a", Some("2"))]
            ),
            "a=1,b=,a=2"
        );
        assert_eq!(render("100%% \\\\ \\x é", None, None, &[]), "100% \\ \\x é");
    }

    #[test]
    fn rejects_unknown_tokens() {
        assert!(Format::parse("%q").unwrap_err().contains("%q"));
        assert!(Format::parse("abc%").is_err());
    }
}
