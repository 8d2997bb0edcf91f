//! The template grammar (see [`crate::template`]) read into its parts: segment
//! patterns, the variables over them, and the verb. A template that breaks the
//! grammar is refused with the reason.

/// One segment pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// `*`: exactly one segment.
    Single,
    /// `**`: zero or more segments; only last.
    Multi,
}

/// A `{field.path=...}` capture over a range of segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The request field the value binds to, e.g. `["user", "user_id"]`.
    pub field_path: Vec<String>,
    /// First segment index it covers.
    pub(super) start: usize,
    /// Segment patterns it covers.
    pub(super) len: usize,
}

impl Variable {
    /// The field path joined with dots, as written in the template.
    pub fn dotted(&self) -> String {
        self.field_path.join(".")
    }
}

/// A template's parts.
pub(super) struct Parts {
    pub(super) segments: Vec<Segment>,
    pub(super) variables: Vec<Variable>,
    pub(super) verb: Option<String>,
}

/// Reads `rest`, a template after its leading `/`, into its parts, or says why not.
pub(super) fn parts(rest: &str) -> Result<Parts, &'static str> {
    let mut parser = Parser {
        chars: rest.char_indices().peekable(),
        text: rest,
    };
    let mut parts = Parts {
        segments: Vec::new(),
        variables: Vec::new(),
        verb: None,
    };
    loop {
        match parser.peek() {
            Some('{') => {
                parser.next();
                let variable = parser.variable(&mut parts.segments)?;
                if parts
                    .variables
                    .iter()
                    .any(|v| v.field_path == variable.field_path)
                {
                    return Err("a field is bound twice");
                }
                parts.variables.push(variable);
            }
            Some(_) => parts
                .segments
                .push(parser.plain_segment().ok_or("empty or malformed segment")?),
            None => return Err("empty segment"),
        }
        match parser.next() {
            Some('/') => continue,
            Some(':') => {
                let verb = parser.remaining();
                if verb.is_empty() || !verb.chars().all(is_literal_char) {
                    return Err("bad verb");
                }
                parts.verb = Some(verb.to_owned());
                return multi_last(parts);
            }
            None => return multi_last(parts),
            Some(_) => return Err("unexpected character"),
        }
    }
}

/// `parts`, if a `**` is its last segment or it has none.
fn multi_last(parts: Parts) -> Result<Parts, &'static str> {
    if let Some(i) = parts.segments.iter().position(|s| *s == Segment::Multi)
        && i + 1 != parts.segments.len()
    {
        return Err("'**' must be the last segment");
    }
    Ok(parts)
}

fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.~!$&'()+,;@%".contains(c)
}

/// Reads a template a character at a time.
struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|(_, c)| *c)
    }

    fn next(&mut self) -> Option<char> {
        self.chars.next().map(|(_, c)| c)
    }

    fn remaining(&mut self) -> &str {
        let start = self.chars.peek().map_or(self.text.len(), |(i, _)| *i);
        while self.chars.next().is_some() {}
        &self.text[start..]
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek().filter(|c| keep(*c)) {
            out.push(c);
            self.next();
        }
        out
    }

    fn field_path(&mut self) -> Option<Vec<String>> {
        let path = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
        let ok = parts.iter().all(|p| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        });
        ok.then_some(parts)
    }

    /// A variable after its `{`: its field path and, after `=`, its segment patterns
    /// (pushed onto `segments`); a bare `{field}` covers one `*`.
    fn variable(&mut self, segments: &mut Vec<Segment>) -> Result<Variable, &'static str> {
        let field_path = self.field_path().ok_or("bad field path")?;
        let start = segments.len();
        match self.next() {
            Some('}') => segments.push(Segment::Single),
            Some('=') => loop {
                segments.push(
                    self.plain_segment()
                        .ok_or("a variable's pattern must be literals, '*' or '**'")?,
                );
                match self.next() {
                    Some('/') => continue,
                    Some('}') => break,
                    _ => return Err("unterminated variable"),
                }
            },
            _ => return Err("unterminated variable"),
        }
        Ok(Variable {
            field_path,
            start,
            len: segments.len() - start,
        })
    }

    fn plain_segment(&mut self) -> Option<Segment> {
        if self.peek() == Some('*') {
            self.next();
            if self.peek() == Some('*') {
                self.next();
                return Some(Segment::Multi);
            }
            return Some(Segment::Single);
        }
        let literal = self.take_while(is_literal_char);
        (!literal.is_empty()).then_some(Segment::Literal(literal))
    }
}
