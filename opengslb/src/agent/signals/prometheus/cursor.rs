//! Character scanner behind the selector and exposition parsers.

/// Minimal scanner shared by the selector and exposition parsers.
pub(super) struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    pub(super) fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    pub(super) fn at_end(&self) -> bool {
        self.rest().is_empty()
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    pub(super) fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.pos += expected.len_utf8();
            true
        } else {
            false
        }
    }

    pub(super) fn eat_str(&mut self, expected: &str) -> bool {
        if self.rest().starts_with(expected) {
            self.pos += expected.len();
            true
        } else {
            false
        }
    }

    pub(super) fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    pub(super) fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// Reads up to the closing quote (the opening one is already consumed),
    /// undoing `\\`, `\"` and `\n`; `None` if the quote is never closed.
    pub(super) fn quoted(&mut self) -> Option<String> {
        let mut value = String::new();
        loop {
            match self.bump()? {
                '"' => return Some(value),
                '\\' => match self.bump()? {
                    'n' => value.push('\n'),
                    c @ ('"' | '\\') => value.push(c),
                    // Unknown escapes are kept so that regex escapes such as
                    // `\.` survive in selectors written with single backslashes.
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                },
                c => value.push(c),
            }
        }
    }
}
