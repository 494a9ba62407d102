//! A reader for the subset of PHP that Flarum's `config.php` is written in:
//! `<?php return <array>;` with array, string, number, boolean and null
//! literals and comments.
//!
//! Anything computed (`getenv()`, variables, casts, concatenation, `?:`) is
//! not guessed at: the reader stops with [`PhpError::Dynamic`] naming the
//! line, and the caller may ask a real PHP to evaluate the file instead.

use serde_json::{Map, Number, Value};

/// Why the file could not be read as a literal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhpError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line}: {what} is computed when PHP runs the file, not a literal value")]
    Dynamic { line: usize, what: String },
}

impl PhpError {
    /// The line of config.php the problem is on, for the message.
    pub fn line(&self) -> usize {
        match self {
            Self::Syntax { line, .. } | Self::Dynamic { line, .. } => *line,
        }
    }
}

/// Parses the whole file and returns the value it returns.
pub fn parse_config(source: &str) -> Result<Value, PhpError> {
    let mut reader = Reader {
        src: source.as_bytes(),
        pos: 0,
    };
    reader.skip_bom();
    reader.expect_word("<?php", "the file must start with <?php")?;
    reader.skip_trivia()?;
    if !reader.eat_keyword("return") {
        if reader.peek().is_none() {
            return Err(reader.unexpected("`return` (the file must be `<?php return [...];`)"));
        }
        return Err(reader.dynamic("code before `return`"));
    }
    reader.skip_trivia()?;
    let value = reader.value()?;
    reader.skip_trivia()?;
    if !reader.eat(b';') {
        return Err(reader.unexpected("`;` after the returned array"));
    }
    reader.skip_trivia()?;
    if reader.eat_word("?>") {
        reader.skip_trivia()?;
    }
    if reader.pos < reader.src.len() {
        return Err(reader.unexpected("the end of the file"));
    }
    Ok(value)
}

struct Reader<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn line(&self) -> usize {
        1 + self.src[..self.pos.min(self.src.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.src[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// A case-insensitive keyword not followed by an identifier character.
    fn eat_keyword(&mut self, word: &str) -> bool {
        let end = self.pos + word.len();
        let matches = self
            .src
            .get(self.pos..end)
            .is_some_and(|s| s.eq_ignore_ascii_case(word.as_bytes()));
        let boundary = self.src.get(end).is_none_or(|b| !is_ident(*b));
        if matches && boundary {
            self.pos = end;
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, word: &str, message: &str) -> Result<(), PhpError> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(self.syntax(message))
        }
    }

    fn skip_bom(&mut self) {
        self.eat_word("\u{feff}");
    }

    fn syntax(&self, message: impl Into<String>) -> PhpError {
        PhpError::Syntax {
            line: self.line(),
            message: message.into(),
        }
    }

    fn unexpected(&self, expected: &str) -> PhpError {
        let found = match self.peek() {
            None => "the end of the file".to_owned(),
            Some(_) => {
                let rest = String::from_utf8_lossy(&self.src[self.pos..]);
                let token: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .take(20)
                    .collect();
                format!("`{token}`")
            }
        };
        self.syntax(format!("expected {expected}, found {found}"))
    }

    fn dynamic(&self, what: impl Into<String>) -> PhpError {
        PhpError::Dynamic {
            line: self.line(),
            what: what.into(),
        }
    }

    /// Skips whitespace and `//`, `#` and `/* */` comments.
    fn skip_trivia(&mut self) -> Result<(), PhpError> {
        loop {
            match self.peek() {
                Some(b) if b.is_ascii_whitespace() => self.pos += 1,
                Some(b'#') => self.skip_line_comment(),
                Some(b'/') if self.src.get(self.pos + 1) == Some(&b'/') => self.skip_line_comment(),
                Some(b'/') if self.src.get(self.pos + 1) == Some(&b'*') => {
                    let start_line = self.line();
                    match self.src[self.pos + 2..].windows(2).position(|w| w == b"*/") {
                        Some(end) => self.pos += 2 + end + 2,
                        None => {
                            return Err(PhpError::Syntax {
                                line: start_line,
                                message: "comment /* is never closed".into(),
                            });
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn skip_line_comment(&mut self) {
        while let Some(b) = self.peek() {
            // A `?>` ends a line comment in PHP too.
            if b == b'\n' || self.src[self.pos..].starts_with(b"?>") {
                return;
            }
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Value, PhpError> {
        match self.peek() {
            Some(b'[') => {
                self.pos += 1;
                self.array_items(b']')
            }
            Some(b'\'') => self.single_quoted().map(Value::String),
            Some(b'"') => self.double_quoted().map(Value::String),
            Some(b'-' | b'+' | b'0'..=b'9' | b'.') => self.number(),
            Some(b'$') => Err(self.dynamic("a variable")),
            Some(b'(') => Err(self.dynamic("a cast or parenthesised expression")),
            Some(b) if is_ident(b) => self.word_value(),
            _ => Err(self.unexpected("a value")),
        }
        .and_then(|value| self.reject_operators(value))
    }

    /// A literal followed by an operator is an expression, not a literal.
    fn reject_operators(&mut self, value: Value) -> Result<Value, PhpError> {
        let save = self.pos;
        self.skip_trivia()?;
        let operator = match self.peek() {
            Some(b'.') => Some("a string concatenation"),
            Some(b'?') if !self.src[self.pos..].starts_with(b"?>") => {
                Some("a `?:` or `??` expression")
            }
            Some(b'+' | b'*' | b'/' | b'%' | b'|' | b'&') => Some("an arithmetic expression"),
            Some(b'-') if self.src.get(self.pos + 1) != Some(&b'>') => {
                Some("an arithmetic expression")
            }
            _ => None,
        };
        if let Some(what) = operator {
            return Err(self.dynamic(what));
        }
        self.pos = save;
        Ok(value)
    }

    fn word_value(&mut self) -> Result<Value, PhpError> {
        if self.eat_keyword("true") {
            return Ok(Value::Bool(true));
        }
        if self.eat_keyword("false") {
            return Ok(Value::Bool(false));
        }
        if self.eat_keyword("null") {
            return Ok(Value::Null);
        }
        let start = self.pos;
        while self.peek().is_some_and(|b| is_ident(b) || b == b'\\') {
            self.pos += 1;
        }
        let word = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
        let save = self.pos;
        self.skip_trivia()?;
        if word.eq_ignore_ascii_case("array") && self.eat(b'(') {
            return self.array_items(b')');
        }
        self.pos = save;
        if self.peek_after_trivia()? == Some(b'(') {
            self.pos = start;
            return Err(self.dynamic(format!("the call {word}()")));
        }
        self.pos = start;
        Err(self.dynamic(format!("the constant {word}")))
    }

    fn peek_after_trivia(&mut self) -> Result<Option<u8>, PhpError> {
        let save = self.pos;
        self.skip_trivia()?;
        let next = self.peek();
        self.pos = save;
        Ok(next)
    }

    /// Items up to `close`; a list when no item has a key, else an object.
    fn array_items(&mut self, close: u8) -> Result<Value, PhpError> {
        let mut entries: Vec<(Option<String>, Value)> = Vec::new();
        loop {
            self.skip_trivia()?;
            if self.eat(close) {
                break;
            }
            let first = self.value()?;
            self.skip_trivia()?;
            let entry = if self.eat_word("=>") {
                self.skip_trivia()?;
                let key = match first {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => u8::from(b).to_string(),
                    Value::Null => String::new(),
                    _ => return Err(self.syntax("an array key must be a string or a number")),
                };
                (Some(key), self.value()?)
            } else {
                (None, first)
            };
            entries.push(entry);
            self.skip_trivia()?;
            if self.eat(close) {
                break;
            }
            if !self.eat(b',') {
                return Err(self.unexpected(&format!("`,` or `{}`", close as char)));
            }
        }
        if entries.iter().all(|(key, _)| key.is_none()) {
            return Ok(Value::Array(entries.into_iter().map(|(_, v)| v).collect()));
        }
        let mut map = Map::new();
        let mut next_index = 0usize;
        for (key, value) in entries {
            let key = key.unwrap_or_else(|| {
                let k = next_index.to_string();
                next_index += 1;
                k
            });
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }

    fn single_quoted(&mut self) -> Result<String, PhpError> {
        let start_line = self.line();
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(unterminated(start_line)),
                Some(b'\'') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') if matches!(self.src.get(self.pos + 1), Some(b'\'' | b'\\')) => {
                    out.push(self.src[self.pos + 1]);
                    self.pos += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.syntax("string is not valid UTF-8"))
    }

    fn double_quoted(&mut self) -> Result<String, PhpError> {
        let start_line = self.line();
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(unterminated(start_line));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'$' if self.peek().is_some_and(|n| is_ident(n) || n == b'{') => {
                    self.pos -= 1;
                    return Err(self.dynamic("a variable inside a double-quoted string"));
                }
                b'{' if self.peek() == Some(b'$') => {
                    self.pos -= 1;
                    return Err(self.dynamic("a variable inside a double-quoted string"));
                }
                b'\\' => self.escape(&mut out)?,
                other => out.push(other),
            }
        }
        String::from_utf8(out).map_err(|_| self.syntax("string is not valid UTF-8"))
    }

    /// One escape sequence of a double-quoted string (the `\` is consumed).
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), PhpError> {
        let Some(b) = self.peek() else {
            out.push(b'\\');
            return Ok(());
        };
        self.pos += 1;
        match b {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0b),
            b'e' => out.push(0x1b),
            b'f' => out.push(0x0c),
            b'\\' | b'$' | b'"' => out.push(b),
            b'0'..=b'7' => {
                let start = self.pos - 1;
                while self.pos < start + 3 && matches!(self.peek(), Some(b'0'..=b'7')) {
                    self.pos += 1;
                }
                let digits = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or("0");
                out.push(u32::from_str_radix(digits, 8).unwrap_or(0) as u8);
            }
            b'x' if self.peek().is_some_and(|c| c.is_ascii_hexdigit()) => {
                let start = self.pos;
                while self.pos < start + 2 && self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                    self.pos += 1;
                }
                let digits = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or("0");
                out.push(u8::from_str_radix(digits, 16).unwrap_or(0));
            }
            b'u' if self.peek() == Some(b'{') => {
                let start = self.pos + 1;
                let Some(len) = self.src[start..].iter().position(|c| *c == b'}') else {
                    return Err(self.syntax("\\u{ escape is never closed"));
                };
                let digits = std::str::from_utf8(&self.src[start..start + len]).unwrap_or("");
                let ch = u32::from_str_radix(digits, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| {
                        self.syntax(format!("invalid unicode escape \\u{{{digits}}}"))
                    })?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                self.pos = start + len + 1;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Value, PhpError> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_'))
            || (matches!(self.peek(), Some(b'-' | b'+'))
                && matches!(self.src.get(self.pos - 1), Some(b'e' | b'E'))
                && !self.src[start..self.pos].starts_with(b"0x"))
        {
            self.pos += 1;
        }
        let text: String = String::from_utf8_lossy(&self.src[start..self.pos]).replace('_', "");
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(&text)),
        };
        let invalid = || self.syntax(format!("`{text}` is not a number"));
        let integer = if let Some(hex) = digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            Some(i64::from_str_radix(hex, 16).map_err(|_| invalid())?)
        } else if let Some(bin) = digits
            .strip_prefix("0b")
            .or_else(|| digits.strip_prefix("0B"))
        {
            Some(i64::from_str_radix(bin, 2).map_err(|_| invalid())?)
        } else if digits.len() > 1
            && digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            Some(i64::from_str_radix(digits.trim_start_matches("0o"), 8).map_err(|_| invalid())?)
        } else if digits.bytes().all(|b| b.is_ascii_digit()) && !digits.is_empty() {
            Some(digits.parse::<i64>().map_err(|_| invalid())?)
        } else {
            None
        };
        match integer {
            Some(n) => Ok(Value::Number(Number::from(if negative { -n } else { n }))),
            None => {
                let float: f64 = digits.parse().map_err(|_| invalid())?;
                let float = if negative { -float } else { float };
                Number::from_f64(float)
                    .map(Value::Number)
                    .ok_or_else(invalid)
            }
        }
    }
}

fn unterminated(line: usize) -> PhpError {
    PhpError::Syntax {
        line,
        message: "string is never closed".into(),
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_the_installer_writes() {
        let source = "<?php return array (\n  'debug' => false,\n  'database' => \n  array (\n    'driver' => 'mysql',\n    'port' => 3306,\n    'prefix' => NULL,\n    'password' => 'it\\'s \\\\ secret',\n  ),\n  'url' => 'https://forum.example',\n);";
        assert_eq!(
            parse_config(source).unwrap(),
            json!({"debug": false, "database": {"driver": "mysql", "port": 3306, "prefix": null, "password": "it's \\ secret"}, "url": "https://forum.example"})
        );
    }

    #[test]
    fn reads_hand_written_variants() {
        let source = r#"<?php
// Flarum config
# written by hand
/* block
   comment */
return [
    "debug" => TRUE,
    "database" => [
        "driver" => "pgsql", // trailing comment
        "port" => "5432",
        "password" => "tab\there \x41\101\u{e9} \$5",
        "ratio" => 1.5e2,
        "neg" => -7,
        'list' => ['a', 'b',],
    ],
];
?>
"#;
        assert_eq!(
            parse_config(source).unwrap(),
            json!({"debug": true, "database": {"driver": "pgsql", "port": "5432", "password": "tab\there AAé $5", "ratio": 150.0, "neg": -7, "list": ["a", "b"]}})
        );
    }

    #[test]
    fn computed_values_are_reported_with_their_line() {
        let cases = [
            (
                "<?php return [\n'password' => getenv('DB_PASS'),\n];",
                2,
                "getenv()",
            ),
            ("<?php return [\n\n'password' => env('X'),\n];", 3, "env()"),
            (
                "<?php\n$host = 'x';\nreturn ['host' => $host];",
                2,
                "before `return`",
            ),
            ("<?php return [\n'port' => (int) '3306',\n];", 2, "cast"),
            ("<?php return ['a' => 'x' . 'y'];", 1, "concatenation"),
            ("<?php return ['a' => getenv('A') ?: 'b'];", 1, "getenv()"),
            ("<?php return ['a' => \"$x\"];", 1, "variable"),
            ("<?php return ['a' => PHP_EOL];", 1, "PHP_EOL"),
        ];
        for (source, line, needle) in cases {
            let error = parse_config(source).unwrap_err();
            assert_eq!(error.line(), line, "{source}: {error}");
            assert!(error.to_string().contains(needle), "{source}: {error}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let error = parse_config("<?php return [\n'a' => 'b'\n'c' => 1];").unwrap_err();
        assert_eq!(error.line(), 3, "{error}");
        assert!(matches!(
            parse_config("return [];"),
            Err(PhpError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse_config("<?php return ['a' => 'open"),
            Err(PhpError::Syntax { .. })
        ));
        assert!(matches!(
            parse_config("<?php return [];\nextra"),
            Err(PhpError::Syntax { line: 2, .. })
        ));
    }
}
