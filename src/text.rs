//! Text helpers shared by the analysis and the rules, below both: compiling
//! the project's own patterns, case-insensitive phrase search on ASCII-lowercased
//! copies, line iteration, and the regex rewrites (`\b` as an ASCII word
//! boundary). Nothing here knows about mail.

/// Compiles one of the project's own patterns (analysis phrases, rules). A roomy lazy-DFA cache keeps the
/// big case-insensitive alternations on the fast path once warm, and `\b` is
/// the ASCII word boundary (the Unicode one stops the DFA on non-ASCII text).
pub fn rx(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&ascii_word_boundaries(pattern))
        .dfa_size_limit(8 << 20)
        .build()
}

/// A case-insensitive pattern of ASCII phrases, run on an ASCII-lowercased
/// copy of the text. With `(?i)` the regex crate finds no literal to scan
/// for (every phrase has too many case variants) and walks its DFA over
/// every byte; lowercase literals on lowercase text give it a vectorised
/// prefilter. Lowercasing ASCII keeps every byte offset, so positions found
/// in the copy are positions in the text. The pattern's letters must be ASCII
/// (or caseless, like CJK): others would lose their case folding.
pub struct Phrases(regex::Regex);

impl Phrases {
    /// `pattern` as written for `(?i)`; its letters are lowercased here
    /// (not the escapes: `\S` stays `\S`).
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        rx(&lowercase_pattern(pattern)).map(Self)
    }
    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(&ascii_lower(text))
    }
    /// The regex itself, for a text already lowercased.
    pub fn on_lowercase(&self) -> &regex::Regex {
        &self.0
    }
}

/// A pattern written for `(?i)` with its letters lowercased (not the
/// escapes: `\S` stays `\S`).
pub fn lowercase_pattern(pattern: &str) -> String {
    let pattern = pattern.strip_prefix("(?i)").unwrap_or(pattern);
    let mut lower = String::with_capacity(pattern.len());
    let mut escaped = false;
    for c in pattern.chars() {
        lower.push(if escaped { c } else { c.to_ascii_lowercase() });
        escaped = !escaped && c == '\\';
    }
    lower
}

pub fn ascii_lower(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(text.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// An ASCII-lowercase copy of a short text made on the stack: a diagnostic
/// nearly always fits, and such a copy is made for every one searched.
pub struct LowercaseCopy {
    stack: [u8; 256],
    heap: Vec<u8>,
}

impl Default for LowercaseCopy {
    fn default() -> Self {
        Self::new()
    }
}

impl LowercaseCopy {
    pub fn new() -> Self {
        Self {
            stack: [0; 256],
            heap: Vec::new(),
        }
    }

    /// `text` ASCII-lowercased: on the stack when it fits, else on the heap.
    pub fn of(&mut self, text: &[u8]) -> &[u8] {
        match self.stack.get_mut(..text.len()) {
            Some(copy) => {
                copy.copy_from_slice(text);
                copy.make_ascii_lowercase();
                copy
            }
            None => {
                self.heap = text.to_ascii_lowercase();
                &self.heap
            }
        }
    }
}

/// `s.lines()` (split at `\n`, a `\r` before it dropped, no empty last
/// line) by memchr: the analysis splits every text into lines, most short.
pub fn lines(s: &str) -> impl Iterator<Item = &str> + '_ {
    lines_inclusive(s).map(|l| {
        let l = l.strip_suffix('\n').unwrap_or(l);
        l.strip_suffix('\r').unwrap_or(l)
    })
}

/// `s.split_inclusive('\n')` by memchr.
pub fn lines_inclusive(s: &str) -> impl Iterator<Item = &str> + '_ {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', rest.as_bytes()).map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

/// `\\b` as an ASCII word boundary: the Unicode one stops the lazy DFA on
/// any non-ASCII text and sends the whole set to the slow PikeVM.
pub fn ascii_word_boundaries(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('b') => out.push_str("(?-u:\\b)"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}
