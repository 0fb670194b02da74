//! A literal prefilter in front of the rules: it picks the rule that one
//! `RegexSet` over all of them picks (the set stays the reference, checked
//! by the tests below, and answers the texts the prefilter cannot).
//!
//! Why it is here: `inmail qualify --json` over the shared corpus copied 20
//! times (6,840 messages) takes a median 195 ms with it, 451 ms with the
//! plain set (2.3 times as long) and 280 ms with each rule's own regex tried
//! in priority order (1.4 times); one message (`tests/fixtures/bounces/
//! postfix.eml`) 28 ms, against 55 and 44. Measured with
//! `scripts/bench-qualify.sh BIN "env INMAIL_RULES_ENGINE=set BIN"
//! "env INMAIL_RULES_ENGINE=ordered BIN"`, 21 alternated runs, BIN being a
//! release build of commit 47f1088, which has the plain variants. (The
//! daemon end to end, `scripts/bench-daemon.sh`, is bounded by PostgreSQL:
//! 4,500 to 10,600 messages/s with 2 workers whichever the variant.) The set
//! has to find *all* matching rules: its lazy DFA tracks every rule's
//! partial matches at once, and the bounded repetitions (`.{0,40}`) make
//! nearly every text position a new state. Rule authors need not know any
//! of this: a rule costs about the same whatever its style
//! (`scripts/bench-rule-styles.sh`).
//!
//! How: one pass over the text finds where rules *could* match: every
//! match of a rule starts with one of its prefix literals ([`Literals`]). The
//! candidates, in priority order, are then verified by an anchored search of
//! that rule alone at each place one of its literals starts (short: it stops
//! as soon as the text leaves the pattern), and the first rule that matches
//! wins. A literal that is by itself a whole match of the rule (an
//! alternative such as `mailbox full`, without look-around) needs no
//! verification at all, and one of an alternative whose suffix literals are
//! long enough waits for one of them to occur at or after it (see
//! [`HitKind::GatedStart`]). An alternative whose prefixes are unbounded is
//! found by its suffix literals instead, and its rule then verified by an
//! unanchored search; a rule with an alternative that has neither is always
//! searched. The result is the same as the set's by construction: a rule
//! matches only where one of its literals occurs.
//!
//! The literals come from the rule's syntax tree restricted to ASCII and
//! folded to lowercase, and are searched ASCII-case-insensitively. That is
//! sound on any text without `ſ` or the Kelvin sign (the only characters
//! Unicode case folding maps onto ASCII letters; such a text goes to the
//! set) and without the rule's *risky* characters: the non-ASCII ones its
//! literals stand for without holding them, from its own non-ASCII
//! characters (`boîte`) and from the classes that become part of a literal
//! (`\d`, `\s`). The characters a literal can stand for are then exactly
//! the ASCII ones, and whatever non-ASCII text a match spans lies past its
//! literals, where the verifying search reads it. On a text with one of its
//! risky characters a rule is searched whole.

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{self, Class, ClassBytes, ClassBytesRange, Hir, HirKind};

pub(super) struct Prefilter {
    /// Literals of every rule, lowercase (see [`HitKind`]).
    literals: Literals,
    /// The rules that have no usable literals: always searched.
    always: Vec<bool>,
    /// Each rule on its own, same syntax as the set, compiled when needed.
    singles: Vec<Single>,
    /// Per rule, the non-ASCII characters its literals stand for without
    /// holding them (see [`literal_non_ascii`]), as sorted, merged ranges:
    /// a text with one of them is searched with the whole rule.
    risky: Vec<Vec<(char, char)>>,
    /// All rules' `risky` characters.
    any_risky: Vec<(char, char)>,
}

/// What the non-ASCII characters of a text mean for the literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonAscii {
    /// None the literals stand for: they find every match.
    Clean,
    /// Some rule's `risky` characters: that rule is searched.
    Risky,
    /// `ſ` or the Kelvin sign, which the ASCII case folding of the literals
    /// misses: the set answers.
    FoldsOntoAscii,
}

/// Reads the non-ASCII characters of `text` against the sorted `risky` ranges.
fn non_ascii(text: &str, risky: &[(char, char)]) -> NonAscii {
    let mut found = NonAscii::Clean;
    for c in non_ascii_chars(text) {
        if matches!(c, '\u{17F}' | '\u{212A}') {
            return NonAscii::FoldsOntoAscii;
        }
        if found == NonAscii::Clean && in_ranges(risky, c) {
            found = NonAscii::Risky;
        }
    }
    found
}

fn non_ascii_chars(text: &str) -> impl Iterator<Item = char> + '_ {
    let from = text
        .bytes()
        .position(|b| !b.is_ascii())
        .unwrap_or(text.len());
    text[from..].chars().filter(|c| !c.is_ascii())
}

fn in_ranges(ranges: &[(char, char)], c: char) -> bool {
    let i = ranges.partition_point(|&(_, end)| end < c);
    ranges.get(i).is_some_and(|&(start, _)| start <= c)
}

/// `ranges` sorted, with overlapping and adjacent ones merged.
fn merged(mut ranges: Vec<(char, char)>) -> Vec<(char, char)> {
    ranges.sort_unstable();
    let mut out: Vec<(char, char)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(start) <= u32::from(last.1) + 1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// Hits kept on the stack; more go to the heap.
const STACK_HITS: usize = 32;

/// The distinct values of sorted `hits`, moved to its front.
fn dedup(hits: &mut [Hit]) -> &[Hit] {
    let mut kept = 0;
    for i in 0..hits.len() {
        if kept == 0 || hits[i] != hits[kept - 1] {
            hits[kept] = hits[i];
            kept += 1;
        }
    }
    &hits[..kept]
}

/// Where a literal of a rule occurs in a text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Hit {
    /// Rules are numbered from a file: far fewer than `u32::MAX`.
    rule: u32,
    start: usize,
    kind: HitKind,
}

/// What a literal is to its rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
enum HitKind {
    /// A match may start here: verified by an anchored search.
    #[default]
    Start,
    /// A match may start here, if one of the rule's `End` literals occurs at
    /// or after it: only then verified. A verification reads the rule's lazy
    /// DFA tables, which the analysis has pushed out of the cache by then:
    /// a cache miss a byte, 1 to 2 µs, for `remote mail server` that turns
    /// out not to be followed by `blocked` forty bytes on.
    GatedStart,
    /// A whole match: no verification needed.
    Whole,
    /// A match of the alternatives that `GatedStart` literals begin may end
    /// with it.
    End,
    /// A match of an alternative whose start is unbounded may end with it:
    /// the rule is searched whole.
    Search,
}

impl HitKind {
    const ALL: [HitKind; 5] = [
        HitKind::Start,
        HitKind::GatedStart,
        HitKind::Whole,
        HitKind::End,
        HitKind::Search,
    ];
}

impl Prefilter {
    /// The patterns as the set compiles them, parsed case-insensitively, in
    /// priority order, and each one's own search ([`Single`]). `None` when a pattern defeats the analysis;
    /// the set alone then decides.
    pub(super) fn new(hirs: &[Hir], singles: Vec<Single>) -> Option<Self> {
        let mut literals = LiteralsBuilder::default();
        let mut always = Vec::with_capacity(hirs.len());
        let mut risky = Vec::with_capacity(hirs.len());
        for (i, hir) in hirs.iter().enumerate() {
            let mut own = Vec::new();
            literal_non_ascii(hir, &mut own);
            risky.push(merged(own));
            match rule_literals(hir) {
                Some(lits) => {
                    for (l, kind) in lits {
                        literals.add(&l, i, kind);
                    }
                    always.push(false);
                }
                None => always.push(true),
            }
        }
        Some(Self {
            literals: literals.build(),
            always,
            singles,
            any_risky: merged(risky.concat()),
            risky,
        })
    }

    /// Compiles every rule's own search now.
    pub(super) fn compile_all(&self) {
        for s in &self.singles {
            let _ = s.get();
        }
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
        let non_ascii = if ascii {
            NonAscii::Clean
        } else {
            non_ascii(text, &self.any_risky)
        };
        if non_ascii == NonAscii::FoldsOntoAscii {
            return None;
        }
        // every occurrence, overlapping: a literal inside another one's
        // occurrence counts too. A text has a dozen-odd: they are kept on
        // the stack, as the lowercase copy is (every allocation here is one
        // per diagnostic qualified)
        let mut stack = [Hit::default(); STACK_HITS];
        let mut len = 0;
        let mut spilled = Vec::new();
        self.literals
            .find_all(text.as_bytes(), |rule, start, kind| {
                let h = Hit {
                    rule: rule as u32,
                    start,
                    kind,
                };
                match stack.get_mut(len) {
                    Some(slot) if spilled.is_empty() => {
                        *slot = h;
                        len += 1;
                    }
                    _ => {
                        if spilled.is_empty() {
                            spilled.extend_from_slice(&stack);
                        }
                        spilled.push(h);
                    }
                }
            });
        let hits = if spilled.is_empty() {
            &mut stack[..len]
        } else {
            spilled.as_mut_slice()
        };
        hits.sort_unstable();
        let hits = dedup(hits);
        let whole = || Input::new(text).earliest(true);
        // the hits are sorted by rule: each rule's are the next run of them
        let mut rest = hits;
        let unverifiable = std::cell::Cell::new(false);
        let found = (0..self.singles.len()).find(|&i| {
            let run = rest.iter().take_while(|h| h.rule as usize == i).count();
            let (at, after) = rest.split_at(run);
            rest = after;
            // compiled only when a text needs it verified; one that cannot
            // be leaves the text to the set
            let rule = Verifier {
                single: &self.singles[i],
                failed: &unverifiable,
            };
            let searched = non_ascii == NonAscii::Risky
                && !self.risky[i].is_empty()
                && non_ascii_chars(text).any(|c| in_ranges(&self.risky[i], c));
            if searched {
                return eligible(i) && rule.is_match(whole());
            }
            if self.always[i] {
                return eligible(i) && rule.is_match(whole());
            }
            if at.is_empty() || !eligible(i) {
                return false;
            }
            if at.iter().any(|h| h.kind == HitKind::Whole) {
                return true;
            }
            if at.iter().any(|h| h.kind == HitKind::Search) {
                return rule.is_match(whole());
            }
            at.iter().any(|h| {
                let open = match h.kind {
                    HitKind::Start => true,
                    HitKind::GatedStart => at
                        .iter()
                        .any(|e| e.kind == HitKind::End && e.start >= h.start),
                    HitKind::Whole | HitKind::End | HitKind::Search => false,
                };
                // look-behind (`\b`) still sees the byte before `start`
                open && rule.is_match(
                    Input::new(text)
                        .range(h.start..)
                        .anchored(Anchored::Yes)
                        .earliest(true),
                )
            })
        });
        if unverifiable.get() {
            return None;
        }
        Some(found)
    }
}

/// The literals of the rule `hir`, each with its kind; `None` when a
/// top-level alternative has neither prefix nor suffix literals (unbounded,
/// or the empty literal: a match could be anywhere). By alternative:
/// - without prefix literals, its suffix literals are `Search` ones;
/// - its exact literals are `Whole` matches where that holds wherever they
///   occur (ASCII case aside): without look-around (`\b` looks past the
///   literal) and with every letter matching either case (`(?-i)` does not);
/// - its other literals are `GatedStart` when its suffix literals are all at
///   least a head long (the scan stays fast), which are then its `End`
///   literals; `Start` otherwise.
///
/// Sound: a match from a gated alternative starts with one of its
/// `GatedStart` literals and ends with one of its suffix literals, which
/// then occurs at or after the start; one from another alternative starts
/// with a `Start` or `Whole` literal. What a verification searches is the
/// whole rule either way.
fn rule_literals(hir: &Hir) -> Option<Vec<(Vec<u8>, HitKind)>> {
    let mut hir = hir;
    while let HirKind::Capture(c) = hir.kind() {
        hir = &c.sub;
    }
    let branches = match hir.kind() {
        HirKind::Alternation(subs) => subs.as_slice(),
        _ => std::slice::from_ref(hir),
    };
    let mut out = Vec::new();
    for b in branches {
        let folded = ascii_lowercase(b);
        // infinite, or the empty literal: a match could be anywhere
        let usable = |seq: &regex_syntax::hir::literal::Seq| {
            seq.literals()
                .is_some_and(|lits| lits.iter().all(|l| !l.as_bytes().is_empty()))
        };
        let starts = extractor(ExtractKind::Prefix).extract(&folded);
        let Some(starts) = starts.literals().filter(|_| usable(&starts)) else {
            let ends = extractor(ExtractKind::Suffix).extract(&folded);
            let ends = ends.literals().filter(|_| usable(&ends))?;
            out.extend(
                ends.iter()
                    .map(|l| (l.as_bytes().to_vec(), HitKind::Search)),
            );
            continue;
        };
        let whole_where_exact = b.properties().look_set().is_empty() && case_closed(b);
        let mut open = starts
            .iter()
            .filter(|l| !(whole_where_exact && l.is_exact()))
            .peekable();
        if open.peek().is_some() {
            let ends = extractor(ExtractKind::Suffix).extract(&folded);
            let kind = match ends
                .literals()
                .filter(|ends| ends.iter().all(|l| l.as_bytes().len() >= 3))
            {
                Some(ends) => {
                    out.extend(ends.iter().map(|l| (l.as_bytes().to_vec(), HitKind::End)));
                    HitKind::GatedStart
                }
                None => HitKind::Start,
            };
            out.extend(open.map(|l| (l.as_bytes().to_vec(), kind)));
        }
        if whole_where_exact {
            out.extend(
                starts
                    .iter()
                    .filter(|l| l.is_exact())
                    .map(|l| (l.as_bytes().to_vec(), HitKind::Whole)),
            );
        }
    }
    Some(out)
}

/// Whether every ASCII letter `hir` can match, it matches in either case.
fn case_closed(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(hir::Literal(bytes)) => !bytes.iter().any(u8::is_ascii_alphabetic),
        HirKind::Class(c) => {
            let member = ascii_members(c);
            (b'a'..=b'z').all(|l| member[usize::from(l)] == member[usize::from(l - 32)])
        }
        HirKind::Repetition(r) => case_closed(&r.sub),
        HirKind::Capture(c) => case_closed(&c.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs.iter().all(case_closed),
    }
}

/// Which ASCII bytes a class holds.
fn ascii_members(c: &Class) -> [bool; 128] {
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
    let mut member = [false; 128];
    for (start, end) in ranges {
        for b in start..=end.min(0x7F) {
            member[b as usize] = true;
        }
    }
    member
}

/// Which ASCII bytes a class holds once lowercased (as an array: pushing
/// them one by one into a class would sort it again at every push).
fn lowercase_members(c: &Class) -> [bool; 128] {
    let holds = ascii_members(c);
    let mut member = [false; 128];
    for b in (0..128u8).filter(|&b| holds[usize::from(b)]) {
        member[usize::from(b.to_ascii_lowercase())] = true;
    }
    member
}

/// Bits in the filter of literal heads (1 KB).
const HEAD_BITS: u32 = 13;
const HEAD_BITS_WORDS: usize = 1 << (HEAD_BITS - 6);

/// The rules' literals as a radix trie, walked from each text position whose
/// first four bytes start some literal, or whose first three are a whole
/// one; those are found in two bitmaps of 1 KB. Four bytes, not three: the
/// words bounces are made of ("mail", "recipient", "not", "the") start
/// literals by their first three bytes at one text position in eight, and
/// four in five of those walks stop at the fourth.
/// An Aho-Corasick DFA over the same literals takes megabytes: next to the
/// analysis it misses the cache on nearly every byte of a diagnostic, while
/// a diagnostic is a hundred-odd bytes with a handful of literal heads, and
/// a walk from one compares whole runs of bytes, laid out in the order it
/// reads them.
struct Literals {
    /// The first four bytes of every literal of four or more.
    heads: Box<[u64; HEAD_BITS_WORDS]>,
    /// The literals of exactly three bytes.
    short_heads: Box<[u64; HEAD_BITS_WORDS]>,
    /// The node each literal head (three bytes) leads to, by open addressing
    /// on the same hash: `(head | 1 << 24, node)`, `(0, 0)` for a free slot.
    head_nodes: Vec<(u32, u32)>,
    /// The shortest literal; below 3 bytes the heads are not used.
    min_len: usize,
    /// The node after each first byte, for literals shorter than a head.
    first: Vec<Option<u32>>,
    /// Depth first, so that a walk reads forward.
    nodes: Vec<Node>,
    /// Each node's label: the bytes that lead into it.
    labels: Vec<u8>,
    /// Each node's children: the first byte of the child's label, and the child.
    edge_bytes: Vec<u8>,
    edge_to: Vec<u32>,
    /// What ends at each node: `rule << 3 | kind` (see [`HitKind::ALL`]).
    outputs: Vec<u32>,
}

#[derive(Clone, Copy)]
struct Node {
    label: u32,
    label_len: u32,
    edges: u32,
    edge_count: u32,
    outputs: u32,
    output_count: u32,
}

/// The literals as a plain trie (a node per byte), while they are added.
#[derive(Default)]
struct LiteralsBuilder {
    /// Per node: its edges, and what ends there; node 0 is the root.
    children: Vec<Vec<(u8, usize)>>,
    ends: Vec<Vec<u32>>,
    min_len: Option<usize>,
}

impl LiteralsBuilder {
    fn add(&mut self, literal: &[u8], rule: usize, kind: HitKind) {
        if self.children.is_empty() {
            self.children.push(Vec::new());
            self.ends.push(Vec::new());
        }
        let mut node = 0usize;
        for &b in literal {
            node = match self.children[node].iter().find(|(e, _)| *e == b) {
                Some(&(_, child)) => child,
                None => {
                    let child = self.children.len();
                    self.children.push(Vec::new());
                    self.ends.push(Vec::new());
                    self.children[node].push((b, child));
                    child
                }
            };
        }
        let out = (rule as u32) << 3 | kind as u32;
        if !self.ends[node].contains(&out) {
            self.ends[node].push(out);
        }
        self.min_len = Some(self.min_len.map_or(literal.len(), |m| m.min(literal.len())));
    }

    fn build(mut self) -> Literals {
        if self.children.is_empty() {
            self.children.push(Vec::new());
            self.ends.push(Vec::new());
        }
        for edges in &mut self.children {
            edges.sort_unstable();
        }
        let mut lits = Literals {
            heads: Box::new([0; HEAD_BITS_WORDS]),
            short_heads: Box::new([0; HEAD_BITS_WORDS]),
            head_nodes: Vec::new(),
            min_len: self.min_len.unwrap_or(usize::MAX),
            first: vec![None; 256],
            nodes: Vec::new(),
            labels: Vec::new(),
            edge_bytes: Vec::new(),
            edge_to: Vec::new(),
            outputs: Vec::new(),
        };
        if lits.min_len < 3 {
            for &(b, child) in &self.children[0] {
                lits.first[usize::from(b)] = Some(self.radix(&mut lits, child, Vec::new()));
            }
            return lits;
        }
        // every path of three bytes from the root: the literal heads, each
        // screened by the fourth bytes that can follow it
        let mut heads = Vec::new();
        for &(a, n1) in &self.children[0] {
            for &(b, n2) in &self.children[n1] {
                for &(c, n3) in &self.children[n2] {
                    let key = head_key(a, b, c);
                    heads.push((key, n3));
                    if !self.ends[n3].is_empty() {
                        set_bit(&mut lits.short_heads, head_hash(key));
                    }
                    for &(d, _) in &self.children[n3] {
                        set_bit(&mut lits.heads, head_hash(long_key(key, d)));
                    }
                }
            }
        }
        lits.head_nodes = vec![(0, 0); (heads.len() * 2).next_power_of_two()];
        let mask = lits.head_nodes.len() - 1;
        for (key, node) in heads {
            let bit = head_hash(key);
            let radix = self.radix(&mut lits, node, Vec::new());
            let mut slot = bit & mask;
            while lits.head_nodes[slot].0 != 0 {
                slot = (slot + 1) & mask;
            }
            lits.head_nodes[slot] = (key, radix);
        }
        lits
    }

    /// Adds the subtrie at plain `node`, reached by `label`, to `lits` as
    /// radix nodes (a run of single-child nodes with nothing ending in them
    /// becomes one label), depth first; returns its index.
    fn radix(&self, lits: &mut Literals, mut node: usize, mut label: Vec<u8>) -> u32 {
        while let ([(b, child)], []) = (self.children[node].as_slice(), self.ends[node].as_slice())
        {
            label.push(*b);
            node = *child;
        }
        let index = lits.nodes.len();
        lits.nodes.push(Node {
            label: lits.labels.len() as u32,
            label_len: label.len() as u32,
            edges: 0,
            edge_count: 0,
            outputs: lits.outputs.len() as u32,
            output_count: self.ends[node].len() as u32,
        });
        lits.labels.extend_from_slice(&label);
        lits.outputs.extend_from_slice(&self.ends[node]);
        let children: Vec<(u8, u32)> = self.children[node]
            .iter()
            .map(|&(b, child)| (b, self.radix(lits, child, vec![b])))
            .collect();
        let n = &mut lits.nodes[index];
        n.edges = lits.edge_bytes.len() as u32;
        n.edge_count = children.len() as u32;
        lits.edge_bytes.extend(children.iter().map(|c| c.0));
        lits.edge_to.extend(children.iter().map(|c| c.1));
        index as u32
    }
}

fn head_key(a: u8, b: u8, c: u8) -> u32 {
    u32::from(a) | u32::from(b) << 8 | u32::from(c) << 16 | 1 << 24
}

/// The head `key` followed by byte `d`.
fn long_key(key: u32, d: u8) -> u32 {
    key & 0xFF_FFFF | u32::from(d) << 24
}

fn set_bit(bits: &mut [u64; HEAD_BITS_WORDS], bit: usize) {
    bits[bit >> 6] |= 1 << (bit & 63);
}

fn has_bit(bits: &[u64; HEAD_BITS_WORDS], bit: usize) -> bool {
    bits[bit >> 6] & (1 << (bit & 63)) != 0
}

fn head_hash(key: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B1) >> (32 - HEAD_BITS)) as usize
}

impl Literals {
    /// Calls `hit(rule, start, kind)` for every literal occurring in
    /// `text`, compared ASCII-case-insensitively (the literals are lowercase).
    fn find_all(&self, text: &[u8], mut hit: impl FnMut(usize, usize, HitKind)) {
        let Some(last) = text.len().checked_sub(self.min_len) else {
            return;
        };
        let mut copy = crate::text::LowercaseCopy::new();
        let text = copy.of(text);
        if self.min_len < 3 {
            for i in 0..=last {
                if let Some(node) = self.first[usize::from(text[i])] {
                    self.walk(text, i, node, i + 1, &mut hit);
                }
            }
            return;
        }
        // the four bytes from `start`, rolled along; at least three here
        let mut key = u32::from(text[0]) << 8 | u32::from(text[1]) << 16 | u32::from(text[2]) << 24;
        for (start, &b) in text[3..].iter().enumerate() {
            key = key >> 8 | u32::from(b) << 24;
            let head = key & 0xFF_FFFF | 1 << 24;
            if has_bit(&self.heads, head_hash(key)) || has_bit(&self.short_heads, head_hash(head)) {
                self.walk_from_head(text, start, head, &mut hit);
            }
        }
        // the last three bytes can only be a literal of three
        let start = text.len() - 3;
        let head = head_key(text[start], text[start + 1], text[start + 2]);
        if has_bit(&self.short_heads, head_hash(head)) {
            self.walk_from_head(text, start, head, &mut hit);
        }
    }

    /// Walks from the node the three bytes `head` at `start` lead to, if any.
    fn walk_from_head(
        &self,
        text: &[u8],
        start: usize,
        head: u32,
        hit: &mut impl FnMut(usize, usize, HitKind),
    ) {
        let mask = self.head_nodes.len() - 1;
        let mut slot = head_hash(head) & mask;
        loop {
            match self.head_nodes[slot] {
                (k, node) if k == head => {
                    self.walk(text, start, node, start + 3, hit);
                    return;
                }
                (0, _) => return,
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// From `node`, whose label should follow at `j` in `text` (lowercase)
    /// for a literal starting at `start`, on along the text while the trie
    /// follows: what ends on the way is hit.
    fn walk(
        &self,
        text: &[u8],
        start: usize,
        node: u32,
        mut j: usize,
        hit: &mut impl FnMut(usize, usize, HitKind),
    ) {
        let mut node = node as usize;
        loop {
            let n = self.nodes[node];
            let label = &self.labels[n.label as usize..(n.label + n.label_len) as usize];
            // inline: most labels are a few bytes and most walks stop at
            // their first, where a comparison call costs more than the loop
            let Some(ahead) = text.get(j..j + label.len()) else {
                return;
            };
            if ahead.iter().zip(label).any(|(a, b)| a != b) {
                return;
            }
            j += label.len();
            let outs = n.outputs as usize..(n.outputs + n.output_count) as usize;
            for &o in &self.outputs[outs] {
                hit((o >> 3) as usize, start, HitKind::ALL[(o & 7) as usize]);
            }
            let Some(&c) = text.get(j) else {
                return;
            };
            let edges = n.edges as usize..(n.edges + n.edge_count) as usize;
            match self.edge_bytes[edges.clone()].iter().position(|&e| e == c) {
                Some(k) => node = self.edge_to[edges.start + k] as usize,
                None => return,
            }
        }
    }
}

/// A rule's verifying search, compiled on its first use.
struct Verifier<'a> {
    single: &'a Single,
    failed: &'a std::cell::Cell<bool>,
}

impl Verifier<'_> {
    fn is_match(&self, input: Input<'_>) -> bool {
        match self.single.get() {
            Some(r) => r.is_match(input),
            None => {
                self.failed.set(true);
                true
            }
        }
    }
}

/// One rule's pattern on its own, compiled the first time a text needs it:
/// a one-shot `inmail qualify` verifies a rule or two, and compiling all of
/// them was most of its start-up.
pub(super) struct Single {
    pattern: String,
    regex: std::sync::OnceLock<Option<Regex>>,
}

impl Single {
    pub(super) fn new(pattern: String) -> Self {
        Self {
            pattern,
            regex: std::sync::OnceLock::new(),
        }
    }

    /// The compiled rule; `None` when it does not compile (the size limit:
    /// the syntax was checked when the set was made).
    pub(super) fn get(&self) -> Option<&Regex> {
        self.regex
            .get_or_init(|| {
                let r = single(&self.pattern);
                if r.is_none() {
                    tracing::error!(pattern = %self.pattern, "a rule does not compile on its own: the whole set decides for it");
                }
                r
            })
            .as_ref()
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

/// Literal extraction for both uses: the candidates' literals and the whole
/// matches. Classes of up to 16 characters are expanded (`[\d.:]` in an
/// address pattern), so that `host ` followed by an address is not a
/// candidate wherever `host ` occurs; the total bounds the start-up work.
fn extractor(kind: ExtractKind) -> Extractor {
    let mut e = Extractor::new();
    e.kind(kind)
        .limit_class(LIMIT_CLASS)
        .limit_total(LIMIT_TOTAL);
    e
}

/// Literals of one rule, at most: past it the extractor shortens them.
const LIMIT_TOTAL: usize = 2_000;

/// Classes of at most this many (ASCII) characters become part of literals.
const LIMIT_CLASS: usize = 16;

/// Adds to `out` the non-ASCII characters of `hir`'s literals and of each
/// class that can become part of a literal. `\d` and `\s` are small once
/// restricted to ASCII, so `exit code \d` has the literals `exit code 0` to
/// `exit code 9`; yet it matches `exit code ٣` too, which only a search of
/// the whole rule finds, as `boîte pleine` has no literal at all. `ſ` and
/// the Kelvin sign, which every `s` and `k` holds, are left out: a text with
/// them goes to the set.
fn literal_non_ascii(hir: &Hir, out: &mut Vec<(char, char)>) {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        // not a literal to the extractor, which sees only ASCII (see
        // [`ascii_lowercase`]), yet part of what a match may start with
        HirKind::Literal(hir::Literal(bytes)) => match std::str::from_utf8(bytes) {
            Ok(text) => out.extend(non_ascii_chars(text).map(|c| (c, c))),
            Err(_) => out.push(('\u{80}', char::MAX)),
        },
        HirKind::Class(c) => {
            // as the extractor sees it: lowercased; a larger class ends a literal
            if lowercase_members(c).iter().filter(|&&m| m).count() > LIMIT_CLASS {
                return;
            }
            match c {
                Class::Unicode(u) => out.extend(
                    u.ranges()
                        .iter()
                        .filter(|r| {
                            r.end() > '\x7F'
                                && !(r.start() == r.end()
                                    && matches!(r.start(), '\u{17F}' | '\u{212A}'))
                        })
                        .map(|r| (r.start().max('\u{80}'), r.end())),
                ),
                // a byte class above ASCII matches no part of a valid UTF-8
                // text on its own; every character it could be part of is risky
                Class::Bytes(b) => {
                    if b.ranges().iter().any(|r| r.end() > 0x7F) {
                        out.push(('\u{80}', char::MAX));
                    }
                }
            }
        }
        HirKind::Repetition(r) => literal_non_ascii(&r.sub, out),
        HirKind::Capture(c) => literal_non_ascii(&c.sub, out),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => {
            subs.iter().for_each(|h| literal_non_ascii(h, out))
        }
    }
}

/// What `hir` can match within an ASCII text, with every letter lowercased: a
/// superset of the lowercased ASCII matches, which is all a prefix literal
/// search with ASCII case folding needs.
fn ascii_lowercase(hir: &Hir) -> Hir {
    map_leaves(hir, &|leaf| match leaf.kind() {
        HirKind::Literal(hir::Literal(bytes)) => {
            if bytes.is_ascii() {
                Hir::literal(bytes.to_ascii_lowercase())
            } else {
                // a non-ASCII character never occurs in an ASCII text
                Hir::fail()
            }
        }
        HirKind::Class(c) => {
            let member = lowercase_members(c);
            let folded = ClassBytes::new(
                (0..128u8)
                    .filter(|&b| member[usize::from(b)])
                    .map(|b| ClassBytesRange::new(b, b)),
            );
            Hir::class(Class::Bytes(folded))
        }
        _ => leaf.clone(),
    })
}

/// `hir` rebuilt with each literal and class replaced by what `leaf` makes
/// of it (captures dropped).
fn map_leaves(hir: &Hir, leaf: &impl Fn(&Hir) -> Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Look(l) => Hir::look(*l),
        HirKind::Literal(_) | HirKind::Class(_) => leaf(hir),
        HirKind::Repetition(r) => Hir::repetition(hir::Repetition {
            min: r.min,
            max: r.max,
            greedy: r.greedy,
            sub: Box::new(map_leaves(&r.sub, leaf)),
        }),
        HirKind::Capture(c) => map_leaves(&c.sub, leaf),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(|h| map_leaves(h, leaf)).collect()),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.iter().map(|h| map_leaves(h, leaf)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Rule, RuleSet};
    use proptest::prelude::*;
    use std::sync::LazyLock;

    static DEFAULT: LazyLock<RuleSet> = LazyLock::new(RuleSet::default_set);

    /// The words of the bundled rules' patterns, and what separates words
    /// in bounces: texts made of them reach deep into the rules' literals,
    /// gates and verifications.
    fn rule_words() -> Vec<String> {
        let mut words: Vec<String> = DEFAULT
            .rules()
            .iter()
            .flat_map(|r| {
                r.pattern
                    .split(|c: char| !c.is_alphanumeric() && c != '\'')
                    .filter(|w| w.len() > 1)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        words.sort();
        words.dedup();
        words.extend(
            [
                " ",
                " ",
                " ",
                ". ",
                ": ",
                "\n",
                "5.1.1",
                "550",
                "192.0.2.1",
                "\u{a0}",
                "’",
                "é",
                "٣",
                "ſ",
            ]
            .map(str::to_owned),
        );
        words
    }

    proptest! {
        /// The prefilter and the set pick the same rule on texts made of
        /// the rules' own words.
        #[test]
        fn agrees_with_the_set_on_rule_words(
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..24)
        ) {
            let words = rule_words();
            let text = picks
                .iter()
                .map(|i| i.get(&words).as_str())
                .collect::<Vec<_>>()
                .join(" ");
            let set_answer = DEFAULT.set().expect("the set compiles").matches(&text).into_iter().next();
            let got = DEFAULT
                .first_match(&text, "example.com")
                .map(|r| DEFAULT.rules.iter().position(|x| std::ptr::eq(x, r)));
            prop_assert_eq!(got.flatten(), set_answer, "text {:?}", text);
        }

        /// A text goes to the set exactly when it holds `ſ` or the Kelvin
        /// sign, and is risky exactly when it holds a risky character.
        #[test]
        fn non_ascii_reads_every_character(
            text in "[a\u{17F}\u{212A}\u{C5}\u{2014}\u{2019}\u{17E}\u{A0}é]{0,12}"
        ) {
            let risky = [('\u{A0}', '\u{A0}'), ('\u{2019}', '\u{2019}')];
            let expected = if text.contains(['\u{17F}', '\u{212A}']) {
                super::NonAscii::FoldsOntoAscii
            } else if text.contains(['\u{A0}', '\u{2019}']) {
                super::NonAscii::Risky
            } else {
                super::NonAscii::Clean
            };
            prop_assert_eq!(super::non_ascii(&text, &risky), expected);
        }
    }

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
            "Remote mail server after RCPT TO: host said it is banned".into(),
            "remote mail server after RCPT TO: 550 user unknown. blocked".into(),
            "the user’s mailbox is full".into(),
            "mailbox\u{a0}over quota".into(),
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
        assert_agrees(&rs, &texts);
    }

    /// What the set answers for each text, the prefilter answers too.
    fn assert_agrees(rs: &RuleSet, texts: &[String]) {
        for t in texts {
            let set_answer = rs
                .set()
                .expect("the set compiles")
                .matches(t)
                .into_iter()
                .map(|i| rs.rules[i].id.clone())
                .next();
            let got = rs
                .first_match(t, "example.com")
                .map(|r: &Rule| r.id.clone());
            assert_eq!(got, set_answer, "text {t:?}");
        }
    }

    /// A literal is taken for a whole match only where it is one: not next
    /// to a look-around, not where the case of a letter is fixed. Literals
    /// shorter than a three-byte head are found too.
    #[test]
    fn whole_matches_only_where_the_rule_matches() {
        let specs = [
            (
                "gated",
                concat!(
                    r"remote (?:ip|server)[^.]{0,20}(?:blocked|denied)|host [\d.]+",
                    r"|h[ée]te inconnu|[a-z]+\.example does not exist",
                ),
            ),
            ("case-fixed", "(?-i:ABC) def"),
            ("bounded", r"\bspf\b|sender policy"),
            ("anchored", "^bare lf"),
            ("unicode-classes", r"exit code \d|mailbox\sfull"),
            ("short", "xy|mailbox (?:is )?full"),
        ];
        let compile = |specs: &[(&str, &str)]| {
            let toml: String = specs
                .iter()
                .enumerate()
                .map(|(i, (id, pattern))| {
                    format!(
                        "[[rule]]\nid = {id:?}\npattern = {pattern:?}\ntype = \"soft\"\n\
                         reason = \"refused\"\ncategory = \"policy_violation\"\npriority = {i}\n"
                    )
                })
                .collect();
            let rules = super::super::parse_rules_toml(&toml, "test").expect("parse");
            let rs = RuleSet::compile(rules).expect("compiles");
            assert!(rs.prefilter.is_some());
            rs
        };
        let texts: Vec<String> = [
            "abc def",
            "ABC def",
            "xABC DEF",
            "spf",
            "spfx failed",
            "the spf check failed",
            "Sender Policy",
            "a bare lf",
            "bare LF here",
            "XY",
            "mailbox is full",
            "MAILBOX FULL",
            // `\d` and `\s` hold more than their ASCII members
            "exit code 3",
            "exit code \u{663}",
            "mailbox\u{a0}full",
            "remote server is blocked",
            "REMOTE IP x DENIED",
            "remote server. blocked",
            "denied: remote server",
            "remote ip at host 1.2.3.4",
            "hôte inconnu",
            "HÉTE INCONNU",
            "mx.example does not exist",
            "it does not exist",
            "MX.EXAMPLE DOES NOT EXIST",
            "",
            "x",
        ]
        .iter()
        .flat_map(|t| [t.to_string(), format!("{t} — é")])
        .collect();
        // with three-byte heads, and without (a two-byte literal)
        assert_agrees(&compile(&specs[..4]), &texts);
        assert_agrees(&compile(&specs), &texts);
    }
}
