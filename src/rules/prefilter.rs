//! A literal prefilter in front of the rules, for ASCII texts.
//!
//! The one `RegexSet` over every rule has to find *all* matching rules, so it
//! runs an overlapping search: the lazy DFA then tracks every rule's partial
//! matches at once and the bounded repetitions (`.{0,40}`, `[^.]{0,40}`) make
//! nearly every text position a new DFA state. The tables grow to many MB and
//! each byte costs a cache miss. Running each rule on its own over the whole
//! text is no better: the same explosion, rule by rule.
//!
//! Instead, one Aho-Corasick pass finds where rules *could* match: every match
//! of a rule starts with one of its prefix literals. The candidates, in
//! priority order, are then verified by an anchored search of that rule alone
//! at each place one of its literals starts (short: it stops as soon as the
//! text leaves the pattern), and the first rule that matches wins. A rule whose
//! prefixes are unbounded is found by its suffix literals instead and verified
//! by an unanchored search; one with neither is always searched. The result is
//! the same as the set's by construction: a rule matches only where one of its
//! literals occurs.
//!
//! The literals come from the rule's syntax tree restricted to ASCII and
//! folded to lowercase, and are searched ASCII-case-insensitively. For a rule
//! written in ASCII that is sound on any text without `ſ` or the Kelvin sign
//! (the only characters Unicode case folding maps onto ASCII letters): the
//! characters its literals can stand for are then exactly the ASCII ones,
//! and whatever non-ASCII text a match spans lies past its literal, where
//! the verifying search reads it. A rule with non-ASCII characters of its
//! own is searched whole on a non-ASCII text; a text holding `ſ` or the
//! Kelvin sign goes to the set.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{self, Class, ClassBytes, ClassBytesRange, Hir, HirKind};

pub(super) struct Prefilter {
    /// Prefix (or suffix) literals of every rule, lowercase.
    literals: AhoCorasick,
    /// The rule (index in priority order) of each literal.
    owner: Vec<usize>,
    /// How each rule's candidates are found and verified.
    found_by: Vec<FoundBy>,
    /// Each rule on its own, same syntax as the set.
    singles: Vec<Regex>,
    /// The rule's pattern has non-ASCII characters: its literals do not
    /// cover them.
    non_ascii: Vec<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FoundBy {
    /// Every match starts with a literal: anchored searches where they occur.
    Prefix,
    /// Every match ends with a literal: one search when any occurs.
    Suffix,
    /// No usable literal (a match could be anywhere): always searched.
    Always,
}

impl Prefilter {
    /// `patterns` as the set compiles them, in priority order, and each one
    /// compiled by [`single`]. `None` when a pattern defeats the analysis;
    /// the set alone then decides.
    pub(super) fn new(patterns: &[String], singles: Vec<Regex>) -> Option<Self> {
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut owner = Vec::new();
        let mut found_by = Vec::with_capacity(patterns.len());
        let non_ascii = patterns.iter().map(|p| !p.is_ascii()).collect();
        for (i, p) in patterns.iter().enumerate() {
            let hir = regex_syntax::ParserBuilder::new()
                .case_insensitive(true)
                .build()
                .parse(p)
                .ok()?;
            let folded = ascii_lowercase(&hir);
            let usable = [
                (ExtractKind::Prefix, FoundBy::Prefix),
                (ExtractKind::Suffix, FoundBy::Suffix),
            ]
            .into_iter()
            .find_map(|(kind, by)| {
                let seq = Extractor::new()
                    .kind(kind)
                    .limit_total(2000)
                    .extract(&folded);
                // infinite, or the empty literal: a match could be anywhere
                let lits = seq
                    .literals()
                    .filter(|lits| lits.iter().all(|l| !l.as_bytes().is_empty()))?;
                Some((
                    lits.iter()
                        .map(|l| l.as_bytes().to_vec())
                        .collect::<Vec<_>>(),
                    by,
                ))
            });
            match usable {
                Some((mut lits, by)) => {
                    shorten(&mut lits, by);
                    owner.extend(std::iter::repeat_n(i, lits.len()));
                    literals.extend(lits);
                    found_by.push(by);
                }
                None => found_by.push(FoundBy::Always),
            }
        }
        // Searched on a lowercased copy of the text: a case-sensitive
        // automaton has half the transitions of a case-insensitive one. With
        // the literals shortened, a DFA's tables stay under 2 MB and a text
        // costs one table lookup per byte instead of an NFA's failure chains.
        let literals = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&literals)
            .ok()?;
        Some(Self {
            literals,
            owner,
            found_by,
            singles,
            non_ascii,
        })
    }

    /// The first rule (priority order) that matches `text` and that `eligible`
    /// accepts; `None` from the outer `Option` when the text holds a character
    /// that folds onto an ASCII letter and the prefilter cannot answer.
    pub(super) fn first_match(
        &self,
        text: &str,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<Option<usize>> {
        let ascii = text.is_ascii();
        if !ascii && text.contains(['\u{17F}', '\u{212A}']) {
            return None;
        }
        // (rule, where one of its literals starts), every occurrence:
        // overlapping, so a literal inside another one's occurrence counts too
        let mut starts: Vec<(usize, usize)> = self
            .literals
            .find_overlapping_iter(crate::analysis::ascii_lower(text).as_ref())
            .map(|m| (self.owner[m.pattern().as_usize()], m.start()))
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let whole = || Input::new(text).earliest(true);
        let found = (0..self.singles.len()).find(|&i| {
            let at = || starts.iter().filter(move |(rule, _)| *rule == i);
            let rule = &self.singles[i];
            if !ascii && self.non_ascii[i] {
                return eligible(i) && rule.is_match(whole());
            }
            match self.found_by[i] {
                FoundBy::Prefix => {
                    at().next().is_some()
                        && eligible(i)
                        && at().any(|&(_, start)| {
                            // look-behind (`\b`) still sees the byte before `start`
                            let input = Input::new(text)
                                .range(start..)
                                .anchored(Anchored::Yes)
                                .earliest(true);
                            rule.is_match(input)
                        })
                }
                FoundBy::Suffix => at().next().is_some() && eligible(i) && rule.is_match(whole()),
                FoundBy::Always => eligible(i) && rule.is_match(whole()),
            }
        });
        Some(found)
    }
}

/// One rule's pattern (as the set compiles it) on its own, with the size
/// limit `check_rule` holds every rule to; `None` when it does not compile.
pub(super) fn single(pattern: &str) -> Option<Regex> {
    Regex::builder()
        .syntax(syntax::Config::new().case_insensitive(true))
        .configure(Regex::config().nfa_size_limit(Some(1 << 20)))
        .build(pattern)
        .ok()
}

/// Literals longer than this are cut to it. A prefix of a prefix literal is
/// still one (and a suffix of a suffix literal), so nothing is missed; a
/// longer literal would only spare a verification now and then, while the
/// cross products of alternations (`(?:your|client) (?:ip|host|server)`)
/// share their first bytes and shortening merges most of them.
const LITERAL_LEN: usize = 12;

/// Cuts each literal to [`LITERAL_LEN`] bytes from the side the rule is
/// found by, and drops the duplicates that makes.
fn shorten(lits: &mut Vec<Vec<u8>>, by: FoundBy) {
    for l in lits.iter_mut().filter(|l| l.len() > LITERAL_LEN) {
        match by {
            FoundBy::Suffix => {
                l.drain(..l.len() - LITERAL_LEN);
            }
            _ => l.truncate(LITERAL_LEN),
        }
    }
    lits.sort_unstable();
    lits.dedup();
}

/// What `hir` can match within an ASCII text, with every letter lowercased: a
/// superset of the lowercased ASCII matches, which is all a prefix literal
/// search with ASCII case folding needs.
fn ascii_lowercase(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Look(l) => Hir::look(*l),
        HirKind::Literal(hir::Literal(bytes)) => {
            if bytes.is_ascii() {
                Hir::literal(bytes.to_ascii_lowercase())
            } else {
                // a non-ASCII character never occurs in an ASCII text
                Hir::fail()
            }
        }
        HirKind::Class(c) => {
            let ranges: Vec<(u32, u32)> = match c {
                Class::Unicode(u) => u
                    .ranges()
                    .iter()
                    .map(|r| (r.start() as u32, r.end() as u32))
                    .collect(),
                Class::Bytes(b) => b
                    .ranges()
                    .iter()
                    .map(|r| (u32::from(r.start()), u32::from(r.end())))
                    .collect(),
            };
            // which ASCII bytes the class holds, lowercased: pushing them
            // one by one would sort the class again at every push
            let mut member = [false; 128];
            for (start, end) in ranges {
                for b in (start..=end.min(0x7F)).filter_map(|c| u8::try_from(c).ok()) {
                    member[usize::from(b.to_ascii_lowercase())] = true;
                }
            }
            let folded = ClassBytes::new(
                (0..128u8)
                    .filter(|&b| member[usize::from(b)])
                    .map(|b| ClassBytesRange::new(b, b)),
            );
            Hir::class(Class::Bytes(folded))
        }
        HirKind::Repetition(r) => Hir::repetition(hir::Repetition {
            min: r.min,
            max: r.max,
            greedy: r.greedy,
            sub: Box::new(ascii_lowercase(&r.sub)),
        }),
        HirKind::Capture(c) => ascii_lowercase(&c.sub),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(ascii_lowercase).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(ascii_lowercase).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Rule, RuleSet};

    /// The prefilter answers exactly as the set: every rule is checked on
    /// texts that match it, texts that match none, and non-ASCII texts.
    #[test]
    fn agrees_with_the_set() {
        let rs = RuleSet::default_set();
        assert!(rs.prefilter.is_some(), "the bundled rules are prefiltered");
        let mut texts: Vec<String> = vec![
            "550 5.1.1 <a@b.example>: Recipient address rejected: User unknown".into(),
            "MAILBOX FULL".into(),
            "host mx.example.com does not exist".into(),
            "the user's mailbox exceeded its quota".into(),
            "Recipient address rejected.  ".into(),
            "nothing to see here".into(),
            "meſſage too large".into(),
            "Boîte pleine".into(),
            "Boîte pleine — mailbox full".into(),
            "550 «user unknown» ça n'existe pas".into(),
            "Unknown user ⟨kim@example.org⟩, try KELVIN \u{212A}".into(),
            "„Postfach voll“: quota exceeded".into(),
            "unable to deliver your message to x for 5 days".into(),
            String::new(),
        ];
        for r in rs.rules() {
            texts.push(format!("xx {} yy", r.id.replace('-', " ")));
            texts.push(format!("« {} » déjà", r.id.replace('-', " ")));
        }
        // the corpus's own diagnostics, with and without accents
        for t in texts.clone() {
            texts.push(format!("{t} — é"));
        }
        let set_answer = |t: &str| {
            rs.set
                .matches(t)
                .into_iter()
                .map(|i| rs.rules[i].id.clone())
                .next()
        };
        for t in &texts {
            let got = rs
                .first_match(t, "example.com")
                .map(|r: &Rule| r.id.clone());
            assert_eq!(got, set_answer(t), "text {t:?}");
        }
    }
}
