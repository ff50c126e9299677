//! Python's lexical rules as gin uses them (it tokenises with Python's `tokenize`):
//! whitespace and comments, identifiers and selectors, number and string literals.
//! Every function is a nom parser over the remaining input; positions are recovered
//! later from how much input is left.

use std::borrow::Cow;

use nom::branch::alt;
use nom::bytes::complete::{take_while, take_while1};
use nom::character::complete::{char, satisfy};
use nom::combinator::{opt, recognize};
use nom::error::{ErrorKind, ParseError};
use nom::sequence::pair;
use nom::{IResult, Parser};

/// A parse failure: where (the remaining input) and what went wrong.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PErr<'a> {
    pub(crate) at: &'a str,
    pub(crate) msg: Cow<'static, str>,
}

impl<'a> ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, _kind: ErrorKind) -> Self {
        PErr {
            at: input,
            msg: Cow::Borrowed("Unexpected token."),
        }
    }

    fn append(_input: &'a str, _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

pub(crate) type PResult<'a, T> = IResult<&'a str, T, PErr<'a>>;

/// A hard error: no alternative parser may retry (nom's `Failure`).
pub(crate) fn fail<'a, T>(at: &'a str, msg: impl Into<Cow<'static, str>>) -> PResult<'a, T> {
    Err(nom::Err::Failure(PErr {
        at,
        msg: msg.into(),
    }))
}

/// A soft error: "not this construct", so the caller may try another (nom's `Error`).
pub(crate) fn miss<'a, T>(at: &'a str) -> PResult<'a, T> {
    Err(nom::Err::Error(PErr {
        at,
        msg: Cow::Borrowed("Unexpected token."),
    }))
}

fn line_continuation(i: &str) -> PResult<'_, &str> {
    recognize(pair(char('\\'), char('\n'))).parse(i)
}

/// Spaces, tabs and `\`-newline joins: the whitespace allowed inside one logical line.
pub(crate) fn hspace(mut i: &str) -> &str {
    loop {
        let rest = i.trim_start_matches([' ', '\t', '\x0c']);
        match line_continuation(rest) {
            Ok((after, _)) => i = after,
            Err(_) => return rest,
        }
    }
}

/// A `#` comment up to (not including) the newline.
pub(crate) fn comment(i: &str) -> PResult<'_, &str> {
    recognize(pair(char('#'), take_while(|c| c != '\n'))).parse(i)
}

/// Whitespace then an optional comment: what may end a logical line.
pub(crate) fn line_tail(i: &str) -> &str {
    let i = hspace(i);
    match comment(i) {
        Ok((rest, _)) => rest,
        Err(_) => i,
    }
}

/// Whitespace, newlines and comments: inside brackets newlines are free (Python's
/// implicit line joining).
pub(crate) fn ws_any(mut i: &str) -> &str {
    loop {
        let rest = line_tail(i).trim_start_matches('\n');
        if rest.len() == i.len() {
            return rest;
        }
        i = rest;
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn identifier(i: &str) -> PResult<'_, &str> {
    recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(i)
}

fn is_module(s: &str) -> bool {
    s.split('.').all(is_identifier)
}

fn is_identifier(s: &str) -> bool {
    matches!(identifier(s), Ok(("", _)))
}

/// A possibly scoped selector `scope/…/a.b.c` without inner whitespace. Scope names
/// are identifiers, or dotted names when `periods_in_scope` (inside `@…` and `%…`).
pub(crate) fn scoped_selector(i: &str, periods_in_scope: bool) -> PResult<'_, &str> {
    if identifier(i).is_err() {
        return fail(i, "Unexpected token.");
    }
    let (rest, text) =
        take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '/')
            .parse(i)?;
    let mut parts: Vec<&str> = text.split('/').collect();
    let selector = parts.pop().unwrap_or_default();
    let scopes_ok = parts.iter().all(|s| {
        if periods_in_scope {
            is_module(s)
        } else {
            is_identifier(s)
        }
    });
    // gin tokenises first and then rejects whitespace inside a selector; a `.` or `/`
    // after blanks is that case.
    let spaced = hspace(rest).starts_with(['.', '/']) && !hspace(rest).starts_with("//");
    if !scopes_ok || !is_module(selector) || spaced {
        return fail(i, "Malformatted scope or selector.");
    }
    Ok((rest, text))
}

/// A number literal as Python's tokenizer reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i128),
    Float(f64),
}

fn digits(radix: u32) -> impl Fn(&str) -> PResult<'_, &str> {
    move |i| {
        recognize(pair(
            satisfy(move |c| c.is_digit(radix)),
            take_while(move |c: char| c.is_digit(radix) || c == '_'),
        ))
        .parse(i)
        .and_then(|(rest, text)| {
            if text.ends_with('_') || text.contains("__") {
                fail(i, "invalid number literal")
            } else {
                Ok((rest, text))
            }
        })
    }
}

fn exponent(i: &str) -> PResult<'_, &str> {
    recognize((
        satisfy(|c| c == 'e' || c == 'E'),
        opt(satisfy(|c| c == '+' || c == '-')),
        digits(10),
    ))
    .parse(i)
}

fn prefixed_int(i: &str) -> PResult<'_, Number> {
    let Some(radix) = prefix_radix(i) else {
        return miss(i);
    };
    let after = &i[2..];
    let after = after.strip_prefix('_').unwrap_or(after);
    let Ok((rest, body)) = digits(radix)(after) else {
        return fail(i, "invalid number literal");
    };
    match i128::from_str_radix(&body.replace('_', ""), radix) {
        Ok(n) => Ok((rest, Number::Int(n))),
        Err(_) => fail(i, "integer literal out of range"),
    }
}

fn prefix_radix(s: &str) -> Option<u32> {
    match s.get(..2)? {
        "0x" | "0X" => Some(16),
        "0o" | "0O" => Some(8),
        "0b" | "0B" => Some(2),
        _ => None,
    }
}

fn decimal(i: &str) -> PResult<'_, Number> {
    let (rest, text) = alt((
        recognize((digits(10), char('.'), opt(digits(10)), opt(exponent))),
        recognize((char('.'), digits(10), opt(exponent))),
        recognize(pair(digits(10), opt(exponent))),
    ))
    .parse(i)?;
    if rest.starts_with(['j', 'J']) {
        return fail(i, "complex numbers are not supported");
    }
    let clean = text.replace('_', "");
    if !clean.contains(['.', 'e', 'E']) {
        if clean.len() > 1 && clean.starts_with('0') && clean.bytes().any(|b| b != b'0') {
            return fail(
                i,
                "leading zeros in decimal integer literals are not permitted",
            );
        }
        return match clean.parse::<i128>() {
            Ok(n) => Ok((rest, Number::Int(n))),
            Err(_) => fail(i, "integer literal out of range"),
        };
    }
    match clean.parse::<f64>() {
        Ok(x) => Ok((rest, Number::Float(x))),
        Err(_) => fail(i, "invalid float literal"),
    }
}

/// An int (decimal, `0x`, `0o`, `0b`, with `_` separators) or float (`1e-3`, `.5`, `5.`).
pub(crate) fn number(i: &str) -> PResult<'_, Number> {
    let (rest, n) = alt((prefixed_int, decimal)).parse(i)?;
    // Python's tokenizer splits `1abc` into two tokens; gin then fails on the second.
    if identifier(rest).is_ok() {
        return fail(rest, "Expected newline.");
    }
    Ok((rest, n))
}

/// Whether a string literal (with an optional prefix) starts here.
pub(crate) fn starts_string(i: &str) -> bool {
    let body = i.trim_start_matches(|c: char| "rRuUbBfF".contains(c));
    (i.len() - body.len()) <= 2 && body.starts_with(['\'', '"'])
}

/// One string literal: optional `r`/`u` prefix, single, double or triple quotes,
/// Python escapes unless raw.
pub(crate) fn string(i: &str) -> PResult<'_, String> {
    let (body, prefix) = take_while(|c: char| "rRuUbBfF".contains(c)).parse(i)?;
    if prefix.len() > 2 || !body.starts_with(['\'', '"']) {
        return miss(i);
    }
    let lower = prefix.to_ascii_lowercase();
    let raw = match lower.as_str() {
        "" | "u" => false,
        "r" => true,
        _ => return fail(i, format!("string prefix `{prefix}` is not supported")),
    };
    let quote = if body.starts_with("'''") {
        "'''"
    } else if body.starts_with("\"\"\"") {
        "\"\"\""
    } else if body.starts_with('\'') {
        "'"
    } else {
        "\""
    };
    let triple = quote.len() == 3;
    let content = &body[quote.len()..];
    let mut out = String::new();
    let mut chars = content.char_indices();
    while let Some((pos, c)) = chars.next() {
        if content[pos..].starts_with(quote) {
            return Ok((&content[pos + quote.len()..], out));
        }
        match c {
            '\n' if !triple => return fail(i, "unterminated string literal"),
            '\\' => {
                let Some((_, next)) = chars.next() else {
                    break;
                };
                if raw {
                    out.push('\\');
                    out.push(next);
                    continue;
                }
                match next {
                    '\n' => {}
                    '\\' | '\'' | '"' => out.push(next),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\x0b'),
                    '0'..='7' => {
                        let mut code = next.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            let mut peek = chars.clone();
                            match peek.next() {
                                Some((_, d)) if d.is_digit(8) => {
                                    code = code * 8 + d.to_digit(8).unwrap_or(0);
                                    chars = peek;
                                }
                                _ => break,
                            }
                        }
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    'x' | 'u' | 'U' => {
                        let len = match next {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut code = 0u32;
                        for _ in 0..len {
                            match chars.next() {
                                Some((_, d)) if d.is_ascii_hexdigit() => {
                                    code = code * 16 + d.to_digit(16).unwrap_or(0);
                                }
                                _ => return fail(i, format!("truncated \\{next} escape")),
                            }
                        }
                        match char::from_u32(code) {
                            Some(ch) => out.push(ch),
                            None => {
                                return fail(
                                    i,
                                    format!("escape \\{next}{code:x} is not a valid character"),
                                )
                            }
                        }
                    }
                    'N' => return fail(i, "\\N{…} escapes are not supported"),
                    other => {
                        // Python keeps unknown escapes verbatim (with a warning).
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            c => out.push(c),
        }
    }
    fail(i, "unterminated string literal")
}
