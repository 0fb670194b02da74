//! Phrases that count only where they start a line, such as the markers in
//! front of a returned message's copy ("----- Original message -----").
//!
//! One regex: a line start, as little of the decoration allowed before the
//! words as lets them match, then the phrases. Like [`crate::text::Phrases`], it
//! runs on the ASCII-lowercased text, whose byte offsets are the text's.

pub(crate) struct LineStartPhrases(regex::Regex);

impl LineStartPhrases {
    /// `pattern` as written for `(?i)` ([`crate::text::Phrases::new`] reads it the
    /// same way); `decoration` says which ASCII bytes may stand before the
    /// phrase on its line.
    pub(crate) fn new(pattern: &str, decoration: fn(u8) -> bool) -> Result<Self, regex::Error> {
        let class: String = (0u8..0x80)
            .filter(|&b| b != b'\n' && decoration(b))
            .map(|b| format!("\\x{b:02x}"))
            .collect();
        let before = if class.is_empty() {
            String::new()
        } else {
            format!("[{class}]*?")
        };
        let phrases = crate::text::lowercase_pattern(pattern);
        crate::text::rx(&format!("(?m)^{before}({phrases})")).map(Self)
    }

    /// The first match that starts a line of `text` after nothing but
    /// decoration, as `(start, end)` of the phrase: the first match of the
    /// lowercase pattern in the lowercased text that passes that test.
    pub(crate) fn find(&self, text: &str) -> Option<(usize, usize)> {
        let lower = crate::text::ascii_lower(text);
        let phrase = self.0.captures(&lower)?.get(1)?;
        Some((phrase.start(), phrase.end()))
    }
}
