//! Phrases that count only where they start a line, such as the markers in
//! front of a returned message's copy ("----- Original message -----").
//!
//! Searching the whole text for the phrases and then dropping the matches
//! inside sentences scans every byte of a report with a big lazy DFA and a
//! literal prefilter, for a handful of line starts. Here each line start
//! (and the decoration before the words) is screened by its first four
//! bytes, and only the few that pass are checked by an anchored search.
//!
//! The phrases are written for [`super::Phrases`]: lowercase, run on an
//! ASCII-lowercased text. The anchored regex reads the text as it stands
//! instead, through the pattern's preimage under ASCII lowercasing (every
//! lowercase letter also takes its capital; a capital, which no lowercased
//! text holds, nothing), so no lowercase copy of the text is made and the
//! matches are the ones the lowercase pattern finds in the lowercased text.

use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{self, Class, ClassBytes, ClassBytesRange, ClassUnicode, Hir, HirKind};

pub(crate) struct LineStartPhrases {
    regex: Regex,
    screen: Screen,
    /// Bytes that may stand before the phrase on its line.
    decoration: [bool; 256],
    plain: regex::Regex,
}

impl LineStartPhrases {
    /// `pattern` as written for `(?i)` ([`super::Phrases::new`] reads it the same way).
    pub(crate) fn new(pattern: &str, decoration: fn(u8) -> bool) -> Result<Self, String> {
        let lower = crate::rules::ascii_word_boundaries(&super::lowercase_pattern(pattern));
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(&lower)
            .map_err(|e| e.to_string())?;
        let regex = Regex::builder()
            .configure(Regex::config().nfa_size_limit(Some(1 << 20)))
            .build_from_hir(&any_ascii_case(&hir))
            .map_err(|e| e.to_string())?;
        let class: String = (0u8..128)
            .filter(|&b| b != b'\n' && decoration(b))
            .map(|b| format!("\\x{b:02x}"))
            .collect();
        let plain = regex::RegexBuilder::new(&format!("(?m)^[{class}]*?({lower})"))
            .dfa_size_limit(8 << 20)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            plain,
            regex,
            screen: Screen::new(&hir),
            decoration: std::array::from_fn(|b| u8::try_from(b).is_ok_and(decoration)),
        })
    }

    /// The first match that starts a line of `text` after nothing but
    /// decoration, as `(start, end)`: the first match of the lowercase
    /// pattern in the lowercased text that passes that test.
    pub(crate) fn find(&self, text: &str) -> Option<(usize, usize)> {
        static PLAIN: std::sync::LazyLock<bool> =
            std::sync::LazyLock::new(|| std::env::var_os("INMAIL_MARKER_PLAIN").is_some());
        if *PLAIN {
            let lower = super::ascii_lower(text);
            let m = self.plain.captures(&lower)?.get(1)?;
            return Some((m.start(), m.end()));
        }
        let b = text.as_bytes();
        let mut line = 0;
        loop {
            let mut p = line;
            loop {
                let here = *b.get(p)?;
                if self.screen.passes(b, p) {
                    let input = Input::new(text).span(p..b.len()).anchored(Anchored::Yes);
                    if let Some(m) = self.regex.search(&input) {
                        return Some((m.start(), m.end()));
                    }
                }
                if here == b'\n' || !self.decoration[usize::from(here)] {
                    break;
                }
                p += 1;
            }
            line = p + 1 + memchr::memchr(b'\n', b.get(p..)?)?;
        }
    }
}

/// The first bytes a match can start with (lowercase, up to
/// [`Screen::LEN`]), from the pattern's prefix literals; a pattern without
/// them screens nothing out. Long enough to tell `--- Transcript of session`
/// from `--- original message`: each anchored search that fails reads the
/// regex's tables after the analysis has pushed them out of the cache.
struct Screen {
    /// For each first byte, the literals' tails after it. No entry: no
    /// match starts with that byte.
    tails: Box<[Vec<Box<[u8]>>; 256]>,
    open: bool,
}

impl Screen {
    const LEN: usize = 24;

    fn new(hir: &Hir) -> Self {
        let open = Self {
            tails: Box::new(std::array::from_fn(|_| Vec::new())),
            open: true,
        };
        let mut e = Extractor::new();
        e.kind(ExtractKind::Prefix)
            .limit_literal_len(Self::LEN)
            .limit_total(1_000);
        let seq = e.extract(hir);
        let Some(lits) = seq.literals() else {
            return open;
        };
        let mut screen = Self {
            open: false,
            ..open
        };
        for l in lits {
            // the empty literal: a match could start with any byte
            let Some((&head, tail)) = l.as_bytes().split_first() else {
                return Self {
                    open: true,
                    ..screen
                };
            };
            screen.tails[usize::from(head)].push(tail.into());
        }
        screen
    }

    /// Whether a match could start at `at`.
    fn passes(&self, b: &[u8], at: usize) -> bool {
        if self.open {
            return true;
        }
        let Some(&head) = b.get(at) else {
            return false;
        };
        // `at` is inside `b`, so this is at most empty
        let after = &b[at + 1..];
        self.tails[usize::from(head.to_ascii_lowercase())]
            .iter()
            .any(|rest| {
                // near the end of the text the anchored search decides
                after.len() < rest.len() || after[..rest.len()].eq_ignore_ascii_case(rest)
            })
    }
}

/// The pattern that matches a text exactly where `hir` matches the text
/// ASCII-lowercased: each lowercase letter also takes its capital, and a
/// capital takes nothing.
fn any_ascii_case(hir: &Hir) -> Hir {
    crate::rules::map_leaves(hir, &|leaf| match leaf.kind() {
        HirKind::Literal(hir::Literal(bytes)) => {
            // ASCII bytes in UTF-8 are whole characters: a byte-wise split
            // keeps the other characters' sequences together
            let mut parts = Vec::new();
            let mut run = Vec::new();
            for &b in bytes.iter() {
                if b.is_ascii_alphabetic() {
                    if !run.is_empty() {
                        parts.push(Hir::literal(std::mem::take(&mut run)));
                    }
                    parts.push(if b.is_ascii_lowercase() {
                        let (l, u) = (char::from(b), char::from(b.to_ascii_uppercase()));
                        Hir::class(Class::Unicode(ClassUnicode::new([
                            hir::ClassUnicodeRange::new(u, u),
                            hir::ClassUnicodeRange::new(l, l),
                        ])))
                    } else {
                        Hir::fail()
                    });
                } else {
                    run.push(b);
                }
            }
            if !run.is_empty() {
                parts.push(Hir::literal(run));
            }
            Hir::concat(parts)
        }
        HirKind::Class(Class::Unicode(c)) => {
            let mut lower = c.clone();
            lower.intersect(&ClassUnicode::new([hir::ClassUnicodeRange::new('a', 'z')]));
            let mut out = c.clone();
            out.difference(&ClassUnicode::new([hir::ClassUnicodeRange::new('A', 'Z')]));
            out.union(&ClassUnicode::new(lower.iter().map(|r| {
                let up = |c: char| char::from((c as u8).to_ascii_uppercase());
                hir::ClassUnicodeRange::new(up(r.start()), up(r.end()))
            })));
            Hir::class(Class::Unicode(out))
        }
        HirKind::Class(Class::Bytes(c)) => {
            let mut lower = c.clone();
            lower.intersect(&ClassBytes::new([ClassBytesRange::new(b'a', b'z')]));
            let mut out = c.clone();
            out.difference(&ClassBytes::new([ClassBytesRange::new(b'A', b'Z')]));
            out.union(&ClassBytes::new(lower.iter().map(|r| {
                ClassBytesRange::new(r.start().to_ascii_uppercase(), r.end().to_ascii_uppercase())
            })));
            Hir::class(Class::Bytes(out))
        }
        _ => leaf.clone(),
    })
}
