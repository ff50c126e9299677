//! The gin grammar on top of the lexer: statements (bindings, macros, blocks,
//! imports, includes) and values, with gin's error messages and `file:line:col`
//! positions.

use std::borrow::Cow;

use crate::ast::{Statement, StatementKind};
use crate::error::{Location, SyntaxError};
use crate::lexer::{
    fail, hspace, identifier, line_tail, number, scoped_selector, starts_string, string, ws_any,
    Number, PErr, PResult,
};
use crate::value::{Reference, Value};

/// Containers nested deeper than this are rejected: recursion must not overflow the
/// stack on hostile input.
const MAX_DEPTH: usize = 100;

/// Parses gin text into statements. `file` names the source in locations and errors.
///
/// ```
/// use hint_config::{parse_str, StatementKind, Value};
/// let statements = parse_str("model.Config.d_model = 512\n", "x.gin").unwrap();
/// assert!(matches!(
///     &statements[0].kind,
///     StatementKind::Binding { selector, param, value: Value::Int(512), .. }
///         if selector == "model.Config" && param == "d_model"
/// ));
/// ```
pub fn parse_str(source: &str, file: &str) -> Result<Vec<Statement>, SyntaxError> {
    // Python reads files with universal newlines.
    let normalized: Cow<'_, str> = if source.contains('\r') {
        Cow::Owned(source.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(source)
    };
    let src = normalized.as_ref();
    let parser = Parser {
        src,
        file,
        line_starts: std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect(),
    };
    let mut out = Vec::new();
    match parser.file(src, &mut out) {
        Ok(()) => Ok(out),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(parser.syntax_error(&e)),
        Err(nom::Err::Incomplete(_)) => Err(parser.syntax_error(&PErr {
            at: "",
            msg: Cow::Borrowed("Unexpected end of input."),
        })),
    }
}

/// Parses a single gin value (as in `gin.config_parser.ConfigParser.parse_value`).
pub fn parse_value(source: &str) -> Result<Value, SyntaxError> {
    let statements = parse_str(&format!("__value__ = {source}"), "<value>")?;
    match statements.into_iter().next().map(|s| s.kind) {
        Some(StatementKind::Macro { value, .. }) => Ok(value),
        _ => Err(SyntaxError {
            location: Location {
                file: "<value>".into(),
                line: 1,
                col: 1,
            },
            message: "Unable to parse value.".into(),
            line_text: source.lines().next().unwrap_or_default().to_string(),
        }),
    }
}

/// How whitespace is skipped around values: within one logical line at statement
/// level, freely (newlines and comments included) inside brackets.
#[derive(Clone, Copy)]
enum Ws {
    Line,
    Any,
}

impl Ws {
    fn skip(self, i: &str) -> &str {
        match self {
            Ws::Line => hspace(i),
            Ws::Any => ws_any(i),
        }
    }
}

struct Parser<'s> {
    src: &'s str,
    file: &'s str,
    line_starts: Vec<usize>,
}

impl<'s> Parser<'s> {
    fn location(&self, at: &str) -> Location {
        let offset = self.src.len().saturating_sub(at.len());
        let line_idx = self.line_starts.partition_point(|&s| s <= offset).max(1) - 1;
        let line_start = self.line_starts[line_idx];
        let col = self
            .src
            .get(line_start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        Location {
            file: self.file.to_string(),
            line: line_idx + 1,
            col,
        }
    }

    fn syntax_error(&self, e: &PErr<'_>) -> SyntaxError {
        let location = self.location(e.at);
        let line_text = self
            .src
            .lines()
            .nth(location.line - 1)
            .unwrap_or_default()
            .to_string();
        SyntaxError {
            location,
            message: e.msg.to_string(),
            line_text,
        }
    }

    /// Skips blank and comment-only lines; returns the start of the next line that
    /// holds a statement (or the empty rest).
    fn skip_blank_lines<'a>(&self, mut i: &'a str) -> &'a str {
        loop {
            let tail = line_tail(i);
            if tail.is_empty() {
                return tail;
            }
            match tail.strip_prefix('\n') {
                Some(next) => i = next,
                None => return i,
            }
        }
    }

    fn indentation(i: &str) -> usize {
        i.len() - i.trim_start_matches([' ', '\t', '\x0c']).len()
    }

    fn file<'a>(&self, mut i: &'a str, out: &mut Vec<Statement>) -> Result<(), nom::Err<PErr<'a>>> {
        loop {
            i = self.skip_blank_lines(i);
            if i.is_empty() {
                return Ok(());
            }
            let indent = Self::indentation(i);
            i = self.statement(hspace(i), indent, out)?;
        }
    }

    /// The end of a logical line: optional comment, then a newline or the end of input.
    fn end_of_line<'a>(&self, i: &'a str) -> PResult<'a, ()> {
        let i = line_tail(i);
        if i.is_empty() {
            return Ok((i, ()));
        }
        match i.strip_prefix('\n') {
            Some(rest) => Ok((rest, ())),
            None => fail(i, "Expected newline."),
        }
    }

    fn statement<'a>(
        &self,
        start: &'a str,
        indent: usize,
        out: &mut Vec<Statement>,
    ) -> Result<&'a str, nom::Err<PErr<'a>>> {
        let location = self.location(start);
        let (rest, key) = scoped_selector(start, false)?;
        let after_key = hspace(rest);
        let (rest, kind) = if let Some(v) = after_key.strip_prefix('=') {
            let (rest, value) = self.value(Ws::Line.skip(v), Ws::Line, 0)?;
            (rest, binding_kind(key, value))
        } else if let Some(rest) = after_key.strip_prefix(':') {
            let block_scope = split_scope(key);
            out.push(Statement {
                kind: StatementKind::Block {
                    scope: block_scope.0.to_string(),
                    selector: block_scope.1.to_string(),
                },
                location,
            });
            return self.block(rest, indent, block_scope, out);
        } else if key == "import" || key == "from" {
            self.import(after_key, key == "from")?
        } else if key == "include" {
            match self.value(after_key, Ws::Line, 0) {
                Ok((rest, Value::Str(path))) => (rest, StatementKind::Include { path }),
                Ok(_) | Err(nom::Err::Error(_)) => {
                    return Err(nom::Err::Failure(PErr {
                        at: after_key,
                        msg: Cow::Borrowed("Expected file path as string."),
                    }))
                }
                Err(e) => return Err(e),
            }
        } else {
            return fail(after_key, "Couldn't parse statement, expected ':' or '='.")
                .map(|(r, ())| r);
        };
        let (rest, ()) = self.end_of_line(rest)?;
        out.push(Statement { kind, location });
        Ok(rest)
    }

    fn import<'a>(&self, i: &'a str, is_from: bool) -> PResult<'a, StatementKind> {
        let (rest, module) = scoped_selector(i, false)?;
        if module.contains('/') {
            return fail(i, "Malformatted scope or selector.");
        }
        let mut module = module.to_string();
        let mut rest = hspace(rest);
        if is_from {
            let Some(after) = rest
                .strip_prefix("import")
                .filter(|r| identifier(r).is_err())
            else {
                return fail(rest, "Expected 'import'.");
            };
            let after = hspace(after);
            let Ok((after, name)) = identifier(after) else {
                return fail(after, "Invalid identifier name.");
            };
            module = format!("{module}.{name}");
            rest = hspace(after);
        }
        let mut alias = None;
        if let Some(after) = rest.strip_prefix("as").filter(|r| identifier(r).is_err()) {
            let after = hspace(after);
            let Ok((after, name)) = identifier(after) else {
                return fail(after, "Invalid identifier name.");
            };
            alias = Some(name.to_string());
            rest = after;
        }
        Ok((
            rest,
            StatementKind::Import {
                module,
                is_from,
                alias,
            },
        ))
    }

    fn block<'a>(
        &self,
        i: &'a str,
        header_indent: usize,
        (scope, selector): (&str, &str),
        out: &mut Vec<Statement>,
    ) -> Result<&'a str, nom::Err<PErr<'a>>> {
        let (mut i, ()) = self.end_of_line(i)?;
        i = self.skip_blank_lines(i);
        let body_indent = Self::indentation(i);
        if i.is_empty() || body_indent <= header_indent {
            return fail(i, "Expected indentation.").map(|(r, ())| r);
        }
        loop {
            let line = hspace(i);
            let location = self.location(line);
            let Ok((rest, param)) = identifier(line) else {
                return fail(line, "Invalid identifier name.").map(|(r, ())| r);
            };
            let Some(rest) = hspace(rest).strip_prefix('=') else {
                return fail(hspace(rest), "Expected '='.").map(|(r, ())| r);
            };
            let (rest, value) = self.value(hspace(rest), Ws::Line, 0)?;
            let (rest, ()) = self.end_of_line(rest)?;
            out.push(Statement {
                kind: StatementKind::Binding {
                    scope: scope.to_string(),
                    selector: selector.to_string(),
                    param: param.to_string(),
                    value,
                },
                location,
            });
            i = self.skip_blank_lines(rest);
            let indent = Self::indentation(i);
            if i.is_empty() || indent <= header_indent {
                return Ok(i);
            }
            if indent > body_indent {
                return fail(hspace(i), "Unexpected indentation.").map(|(r, ())| r);
            }
            if indent < body_indent {
                return fail(
                    hspace(i),
                    "Unindent does not match any outer indentation level.",
                )
                .map(|(r, ())| r);
            }
        }
    }

    /// A value followed by any whitespace allowed in `ws` (the caller checks what comes
    /// next). Parsers are tried in gin's order: container, literal, reference, macro.
    fn value<'a>(&self, i: &'a str, ws: Ws, depth: usize) -> PResult<'a, Value> {
        if depth > MAX_DEPTH {
            return fail(i, "Containers nested too deeply.");
        }
        let (rest, value) = match i.chars().next() {
            Some('[' | '(' | '{') => self.container(i, depth)?,
            Some('@') => self.reference(i, ws)?,
            Some('%') => {
                let (rest, name) = scoped_selector(ws.skip(&i[1..]), true)?;
                (rest, Value::Macro(name.to_string()))
            }
            Some('-') => {
                let after = ws.skip(&i[1..]);
                match number(after) {
                    Ok((rest, n)) => (rest, number_value(after, n, true)?),
                    Err(nom::Err::Error(_)) => return fail(i, "Unable to parse value."),
                    Err(e) => return Err(e),
                }
            }
            Some(c) if c.is_ascii_digit() || c == '.' => match number(i) {
                Ok((rest, n)) => (rest, number_value(i, n, false)?),
                Err(nom::Err::Error(_)) => return fail(i, "Unable to parse value."),
                Err(e) => return Err(e),
            },
            Some(_) if starts_string(i) => self.strings(i, ws)?,
            Some(_) => match identifier(i) {
                Ok((rest, "True")) => (rest, Value::Bool(true)),
                Ok((rest, "False")) => (rest, Value::Bool(false)),
                Ok((rest, "None")) => (rest, Value::None),
                Ok((_, name)) => {
                    return fail(
                        i,
                        format!(
                            "Unable to parse value: `{name}` is not a literal (strings need quotes, references `@`, macros `%`)."
                        ),
                    )
                }
                Err(_) => return fail(i, "Unable to parse value."),
            },
            None => return fail(i, "Unable to parse value."),
        };
        Ok((ws.skip(rest), value))
    }

    /// Adjacent string literals concatenate, as in Python.
    fn strings<'a>(&self, i: &'a str, ws: Ws) -> PResult<'a, Value> {
        let (mut rest, mut text) = string(i)?;
        loop {
            let next = ws.skip(rest);
            if !starts_string(next) {
                return Ok((rest, Value::Str(text)));
            }
            let (after, more) = string(next)?;
            text.push_str(&more);
            rest = after;
        }
    }

    fn reference<'a>(&self, i: &'a str, ws: Ws) -> PResult<'a, Value> {
        let (rest, name) = scoped_selector(ws.skip(&i[1..]), true)?;
        let after = ws.skip(rest);
        let (rest, call) = match after.strip_prefix('(') {
            Some(inner) => match ws.skip(inner).strip_prefix(')') {
                Some(rest) => (rest, true),
                None => return fail(ws.skip(inner), "Expected ')'."),
            },
            None => (rest, false),
        };
        let (scope, selector) = split_scope(name);
        Ok((
            rest,
            Value::Ref(Reference {
                scope: scope.to_string(),
                selector: selector.to_string(),
                call,
            }),
        ))
    }

    fn container<'a>(&self, i: &'a str, depth: usize) -> PResult<'a, Value> {
        let open = i.chars().next().unwrap_or('[');
        let close = match open {
            '(' => ')',
            '{' => '}',
            _ => ']',
        };
        let mut rest = ws_any(&i[1..]);
        let mut items = Vec::new();
        let mut pairs: Vec<(Value, Value)> = Vec::new();
        let mut saw_comma = false;
        while !rest.starts_with(close) {
            if open == '{' {
                let (r, key) = self.value(rest, Ws::Any, depth + 1)?;
                let Some(r) = r.strip_prefix(':') else {
                    return fail(r, "Expected ':'.");
                };
                let (r, value) = self.value(ws_any(r), Ws::Any, depth + 1)?;
                // A Python dict keeps the first position of a repeated key, last value.
                match pairs.iter_mut().find(|(k, _)| python_key_eq(k, &key)) {
                    Some(slot) => slot.1 = value,
                    None => pairs.push((key, value)),
                }
                rest = r;
            } else {
                let (r, value) = self.value(rest, Ws::Any, depth + 1)?;
                items.push(value);
                rest = r;
            }
            if let Some(r) = rest.strip_prefix(',') {
                saw_comma = true;
                rest = ws_any(r);
            } else if !rest.starts_with(close) {
                return fail(rest, format!("Expected ',' or '{close}'."));
            }
        }
        let rest = &rest[1..];
        let value = match open {
            '{' => Value::Dict(pairs),
            '(' if items.len() == 1 && !saw_comma => items.pop().unwrap_or(Value::None),
            '(' => Value::Tuple(items),
            _ => Value::List(items),
        };
        Ok((rest, value))
    }
}

fn number_value<'a>(at: &'a str, n: Number, negative: bool) -> Result<Value, nom::Err<PErr<'a>>> {
    match n {
        Number::Int(v) => {
            let v = if negative { -v } else { v };
            i64::try_from(v)
                .map(Value::Int)
                .or_else(|_| fail(at, "integer literal out of range (64 bits)").map(|(_, v)| v))
        }
        Number::Float(x) => Ok(Value::Float(if negative { -x } else { x })),
    }
}

/// Python dict key equality: `1`, `1.0` and `True` are the same key.
fn python_key_eq(a: &Value, b: &Value) -> bool {
    fn numeric(v: &Value) -> Option<f64> {
        match v {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            // Exact for the integers where the quirk matters; huge ones compare as floats.
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            _ => None,
        }
    }
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        _ => match (numeric(a), numeric(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

/// `a/b/sel` → (`a/b`, `sel`).
fn split_scope(key: &str) -> (&str, &str) {
    key.rsplit_once('/').unwrap_or(("", key))
}

/// gin's `parse_binding_key`: the last `.` component is the parameter; a key without
/// `.` defines a macro.
fn binding_kind(key: &str, value: Value) -> StatementKind {
    let (scope, selector) = split_scope(key);
    match selector.rsplit_once('.') {
        Some((selector, param)) => StatementKind::Binding {
            scope: scope.to_string(),
            selector: selector.to_string(),
            param: param.to_string(),
            value,
        },
        None => StatementKind::Macro {
            scope: scope.to_string(),
            name: selector.to_string(),
            value,
        },
    }
}
