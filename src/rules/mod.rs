//! Qualification: turns a [`RecipientReport`] into a [`Verdict`] (type, reason,
//! category).
//!
//! Order of evidence: what the message's structure says (auto-reply, complaint,
//! delay, success), then the ordered regex rules (data, compiled once into a
//! `RegexSet`, lowest priority number first), then the enhanced status code
//! (RFC 3463 / 5248), then the SMTP reply code. Nothing at all gives
//! not_defined, soft, `qualified: false`: those feed the "to qualify" queue.

pub mod codes;
mod prefilter;

use crate::analysis::RecipientReport;
use crate::model::{BounceType, Category, EnhancedStatus, Reason, SmtpCommand};
use regex::{RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The rule set shipped with inmail (`config/rules.toml`).
pub const DEFAULT_RULES_TOML: &str = include_str!("../../config/rules.toml");

/// One qualification rule, as stored in `config/rules.toml` and in PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    /// Case-insensitive regex matched against the diagnostic text.
    pub pattern: String,
    #[serde(rename = "type")]
    pub bounce_type: BounceType,
    pub reason: Reason,
    pub category: Category,
    /// Lower runs first.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// When set, the rule applies only to recipients in this domain (or its subdomains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// What says the text means this: the RFC section, the MTA's source
    /// file or documentation, or the provider's published error-code page.
    /// Every bundled rule has one (a test checks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn default_priority() -> i32 {
    100
}

/// The outcome of qualification for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    #[serde(rename = "type")]
    pub bounce_type: BounceType,
    pub reason: Reason,
    pub category: Category,
    /// Rule id, or `builtin:<what>` for the structural and code fallbacks.
    pub rule: String,
    /// False when nothing explained the failure: it goes to the "to qualify" queue.
    pub qualified: bool,
    /// Human-readable: why this verdict; see [`Verdict::explanation`].
    #[serde(skip)]
    pub why: Explanation,
}

/// Why a verdict, kept in parts: only `--explain` and `rules test` read it,
/// and formatting it for every recipient cost more than the rule search's
/// verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Explanation {
    /// The verdict's rule matched this text ("the diagnostic").
    RuleMatched(&'static str),
    Text(String),
}

impl Verdict {
    fn from_category(
        category: Category,
        rule: String,
        qualified: bool,
        explanation: String,
    ) -> Self {
        let (bounce_type, reason) = category.default_verdict();
        Self {
            bounce_type,
            reason,
            category,
            rule,
            qualified,
            why: Explanation::Text(explanation),
        }
    }

    /// Human-readable: why this verdict.
    pub fn explanation(&self) -> std::borrow::Cow<'_, str> {
        match &self.why {
            Explanation::RuleMatched(text) => format!("rule {} matched {text}", self.rule).into(),
            Explanation::Text(t) => t.as_str().into(),
        }
    }
    /// The failure is the sender's fault and must not count against the address.
    pub fn sender_side(&self) -> bool {
        self.category.sender_side()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rule {id}: pattern does not compile: {source}")]
    BadPattern {
        id: String,
        source: Box<regex::Error>,
    },
    #[error("rule set does not compile: {0}")]
    Set(Box<regex::Error>),
    #[error("rules file {path}: {message}")]
    File { path: String, message: String },
    #[error("duplicate rule id {0}")]
    Duplicate(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<Rule>,
}

/// Parses a rules file in the `config/rules.toml` format.
pub fn parse_rules_toml(text: &str, origin: &str) -> Result<Vec<Rule>, RulesError> {
    let f: RulesFile = toml::from_str(text).map_err(|e| RulesError::File {
        path: origin.to_string(),
        message: e.to_string(),
    })?;
    Ok(f.rule)
}

pub fn load_file(path: &Path) -> Result<Vec<Rule>, RulesError> {
    let text = std::fs::read_to_string(path).map_err(|e| RulesError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_rules_toml(&text, &path.display().to_string())
}

pub fn default_rules() -> Vec<Rule> {
    parse_rules_toml(DEFAULT_RULES_TOML, "config/rules.toml")
        .expect("the bundled rules file parses (checked by tests)")
}

/// Checks one rule's pattern the way the set will compile it.
pub fn check_rule(rule: &Rule) -> Result<(), RulesError> {
    regex::RegexBuilder::new(&rule.pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| RulesError::BadPattern {
            id: rule.id.clone(),
            source: Box::new(e),
        })
}

/// What a delay warning (`Action: delayed`, "still being retried") counts as.
///
/// `soft` (the default): the address is failing now, so the warning counts
/// like any soft error (at most once a day, and the counters reset after the
/// quiet period). It never schedules a retry: the sending MTA still holds the
/// message. `ignored`: only the final failure or success counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelayWarnings {
    #[default]
    Soft,
    Ignored,
}

impl DelayWarnings {
    fn bounce_type(self) -> BounceType {
        match self {
            Self::Soft => BounceType::Soft,
            Self::Ignored => BounceType::Ignored,
        }
    }
}

/// Compiled rules. Cheap to share (`Arc`), immutable: a reload builds a new one.
pub struct RuleSet {
    rules: Vec<Rule>,
    /// The patterns as the set compiles them, in priority order.
    patterns: Vec<String>,
    /// Every rule at once: only for texts the prefilter cannot answer, so
    /// built the first time one comes (most runs never need it).
    set: std::sync::OnceLock<Option<RegexSet>>,
    /// Answers for ASCII texts without the set's costly overlapping search.
    prefilter: Option<prefilter::Prefilter>,
    delays: DelayWarnings,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl RuleSet {
    /// Compiles every rule; the first that does not compile is reported by id.
    pub fn compile(rules: Vec<Rule>) -> Result<Self, RulesError> {
        let mut seen = std::collections::HashSet::new();
        let mut compiled = Vec::with_capacity(rules.len());
        for r in rules {
            if !seen.insert(r.id.clone()) {
                return Err(RulesError::Duplicate(r.id));
            }
            // Checked by parsing, as the set and the prefilter will: the
            // regexes themselves are compiled when a text first needs them
            // (a one-shot `qualify` needs one or two of them).
            let pattern = crate::text::ascii_word_boundaries(&r.pattern);
            let hir = match regex_syntax::ParserBuilder::new()
                .case_insensitive(true)
                .build()
                .parse(&pattern)
            {
                Ok(hir) => hir,
                Err(_) => {
                    // the regex crate's own message names what is wrong
                    check_rule(&r)?;
                    return Err(RulesError::BadPattern {
                        id: r.id.clone(),
                        source: Box::new(regex::Error::Syntax(format!(
                            "{:?} does not parse",
                            r.pattern
                        ))),
                    });
                }
            };
            let single = prefilter::Single::new(pattern.clone());
            compiled.push((r, (pattern, hir), single));
        }
        // stable: equal priorities keep file order
        compiled.sort_by_key(|(r, _, _)| r.priority);
        let (rules, compiled): (Vec<Rule>, Vec<_>) =
            compiled.into_iter().map(|(r, p, s)| (r, (p, s))).unzip();
        let (parsed, singles): (Vec<(String, regex_syntax::hir::Hir)>, Vec<_>) =
            compiled.into_iter().unzip();
        let (patterns, hirs): (Vec<String>, Vec<_>) = parsed.into_iter().unzip();
        let prefilter = prefilter::Prefilter::new(&hirs, singles);
        Ok(Self {
            rules,
            patterns,
            set: std::sync::OnceLock::new(),
            prefilter,
            delays: DelayWarnings::default(),
        })
    }

    /// Compiles what [`RuleSet::compile`] leaves for later (the set, each
    /// rule's own search), and fails as compiling them all at once did: for
    /// a long-running process that would rather pay now than on its first
    /// message, and for tests.
    pub fn compile_now(self) -> Result<Self, RulesError> {
        if self.set.get().is_none() {
            let set = build_set(&self.patterns).map_err(|e| RulesError::Set(Box::new(e)))?;
            // a concurrent first use may have won: either holds the same set
            let _ = self.set.set(Some(set));
        }
        if let Some(p) = &self.prefilter {
            p.compile_all();
        }
        Ok(self)
    }

    fn set(&self) -> Option<&RegexSet> {
        self.set
            .get_or_init(|| match build_set(&self.patterns) {
                Ok(set) => Some(set),
                Err(e) => {
                    tracing::error!(error = %e, "the rule set does not compile: no rule matches");
                    None
                }
            })
            .as_ref()
    }

    /// The same rules, with delay warnings counted as `delays` says.
    pub fn with_delay_warnings(mut self, delays: DelayWarnings) -> Self {
        self.delays = delays;
        self
    }

    pub fn default_set() -> Self {
        Self::compile(default_rules()).expect("the bundled rules compile (checked by tests)")
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What a verdict rests on: its rule's `source`, or the document behind
    /// a built-in decision ([`builtin_source`]).
    pub fn source_of(&self, v: &Verdict) -> Option<std::borrow::Cow<'_, str>> {
        if let Some(b) = builtin_source(&v.rule) {
            return Some(b.into());
        }
        self.rules
            .iter()
            .find(|r| r.id == v.rule)
            .and_then(|r| r.source.as_deref())
            .map(Into::into)
    }

    /// The first rule (by priority) matching `text` for a recipient in `domain`.
    pub fn first_match(&self, text: &str, domain: &str) -> Option<&Rule> {
        let in_scope = |r: &Rule| {
            r.domain
                .as_deref()
                .is_none_or(|d| domain_in_scope(domain, d))
        };
        if let Some(found) = self
            .prefilter
            .as_ref()
            .and_then(|p| p.first_match(text, |i| in_scope(&self.rules[i])))
        {
            return found.map(|i| &self.rules[i]);
        }
        self.set()?
            .matches(text)
            .into_iter()
            .map(|i| &self.rules[i])
            .find(|r| in_scope(r))
    }

    pub fn qualify(&self, r: &RecipientReport) -> Verdict {
        if r.hint == Some(Category::Delayed) {
            // Still being retried by the sending MTA: the cause (mailbox full,
            // host down, ...) is the reason; a cause on the sender's side
            // keeps its category so it never counts against the address.
            let cause = self.qualify_failure(r);
            let reason = if cause.qualified {
                cause.reason
            } else {
                Reason::Unreachable
            };
            let category = if cause.sender_side() {
                cause.category
            } else {
                Category::Delayed
            };
            return Verdict {
                bounce_type: self.delays.bounce_type(),
                reason,
                category,
                rule: "builtin:delayed".into(),
                qualified: true,
                why: Explanation::Text(format!(
                    "a delay warning: delivery is still being tried; the cause: {}",
                    cause.explanation()
                )),
            };
        }
        if let Some(hint) = r.hint {
            return Verdict::from_category(
                hint,
                format!("builtin:{hint}"),
                true,
                format!("the message is {}", hint.describe()),
            );
        }
        let v = self.qualify_failure(r);
        let explicit_status = r.status.filter(|_| !r.status_inferred);
        let v = adjust_for_context(v, r.smtp_command, explicit_status);
        let v = given_up_on_a_transient_failure(v, r.action, explicit_status);
        never_hard_when_transient(v, explicit_status, r.reply_code)
    }

    fn rule_verdict(
        &self,
        text: Option<&str>,
        domain: &str,
        from: &'static str,
    ) -> Option<Verdict> {
        let rule = self.first_match(text?, domain)?;
        Some(Verdict {
            bounce_type: rule.bounce_type,
            reason: rule.reason,
            category: rule.category,
            rule: rule.id.clone(),
            qualified: true,
            why: Explanation::RuleMatched(from),
        })
    }

    fn qualify_failure(&self, r: &RecipientReport) -> Verdict {
        let domain = r.address.domain();
        if let Some(v) = self.rule_verdict(r.diagnostic.as_deref(), domain, "the diagnostic") {
            return v;
        }
        if let Some(st) = r.status.filter(|s| !(r.status_inferred || s.is_generic())) {
            if let Some((cat, source)) = codes::status_meaning(st) {
                return Verdict::from_category(
                    cat,
                    format!("builtin:status:{st}"),
                    true,
                    format!(
                        "no rule matched; enhanced status {st} means {} ({source})",
                        cat.describe()
                    ),
                );
            }
        }
        if r.context.as_deref() != r.diagnostic.as_deref() {
            if let Some(v) = self.rule_verdict(r.context.as_deref(), domain, "the bounce text") {
                return v;
            }
        }
        if let Some(rc) = r.reply_code {
            if let Some((cat, source)) = codes::reply_meaning(rc) {
                return Verdict::from_category(
                    cat,
                    format!("builtin:reply:{rc}"),
                    true,
                    format!(
                        "no rule or status matched; reply code {rc} means {} ({source})",
                        cat.describe()
                    ),
                );
            }
        }
        let permanent = r
            .status
            .map(|s| s.class == 5)
            .or(r.reply_code.map(|c| c.class() == 5));
        Verdict {
            bounce_type: BounceType::Soft,
            reason: Reason::NotDefined,
            category: Category::Undefined,
            rule: "builtin:undefined".into(),
            qualified: false,
            why: Explanation::Text(format!(
                "nothing explains this {}failure: queued to qualify",
                match permanent {
                    Some(true) => "permanent ",
                    Some(false) => "temporary ",
                    None => "",
                }
            )),
        }
    }
}

/// The document behind a built-in decision (`builtin:<what>`), None for a
/// rule id.
pub fn builtin_source(rule: &str) -> Option<String> {
    let what = rule.strip_prefix("builtin:")?;
    if let Some(code) = what.strip_prefix("status:") {
        return Some(match code.parse() {
            Ok(st) => codes::status_meaning(st).map_or_else(
                || format!("{}: {code}", codes::REGISTRY),
                |(_, source)| source,
            ),
            Err(_) => codes::REGISTRY.to_owned(),
        });
    }
    if let Some(code) = what.strip_prefix("reply:") {
        return Some(
            code.parse()
                .ok()
                .and_then(codes::reply_meaning)
                .map_or_else(|| format!("RFC 5321 §4.2: {code}"), |(_, source)| source),
        );
    }
    if rule == SESSION_REFUSED {
        return Some(
            "RFC 5321 §3.1 (a server may refuse the session in its opening reply, 554 or 421) and §4.1.1.1 (HELO/EHLO identifies the client): a refusal before any recipient is about the sending host"
                .to_owned(),
        );
    }
    let hint = match what.parse::<Category>() {
        Ok(c) => c,
        Err(_) => return Some(format!("inmail's built-in {what}")),
    };
    Some(
        match hint {
            Category::Delayed => "RFC 3464 §2.3.3 (Action: delayed): delivery is still being tried",
            Category::Delivered => {
                "RFC 3464 §2.3.3 (Action: delivered, relayed or expanded); RFC 3463 §2 (2.X.X Success)"
            }
            Category::AutoReply => "RFC 3834 §5 (Auto-Submitted: auto-replied) and the vendor headers of automatic replies",
            Category::SpamComplaint => "RFC 5965 §3.1 (message/feedback-report, Feedback-Type)",
            Category::Undefined => {
                "nothing in the message explains the failure: RFC 3463 §2 gives only its class"
            }
            _ => return Some(format!("inmail's built-in {what}")),
        }
        .to_owned(),
    )
}

/// What the refused command and the status code say about who is at fault,
/// from evidence the message itself carries:
///
/// - a "user unknown" answered to DATA: the server accepted the recipient at
///   RCPT TO (RFC 5321 §3.3: RCPT is where a mailbox is refused, and the
///   transaction goes on to DATA only when a recipient was accepted), so a
///   filter spoke after the fact, not the mailbox — unless the code is an
///   address one (X.1.x), which some servers that check late do send;
/// - a "user unknown" carrying a policy code (X.7.x) or X.2.0, which the
///   registry defines as "the mailbox exists, but something about [it]
///   caused this DSN" (RFC 3463 §3.3): the code contradicts the words;
/// - a recipient-side reason answered to MAIL FROM is about the sender
///   (RFC 5321 §3.3: MAIL names the reverse path);
/// - a refusal at the greeting or at HELO/EHLO, before any recipient was
///   named, is about the sending host: RFC 5321 §3.1 lets a server refuse
///   the session in its opening reply (554, or 421 when it will not serve),
///   and HELO/EHLO only identifies the client (§4.1.1.1). Postfix reports
///   the first as "refused to talk to me" (smtp_proto.c), Exim as "SMTP
///   error ... after EHLO". A refusal that names no cause, or one about an
///   address or a message, which no recipient or message has been named to
///   be, is then about the client: the host is blocked (sender side). A
///   cause a rule names about the session (PTR, rate, TLS, syntax) or the
///   remote system (421 "Service not available", RFC 5321 §4.2.3; "No SMTP
///   service here", §3.1) stays what it is.
///
/// A bare "550 unknown user" with no enhanced code and no command is a user
/// unknown: RFC 5321 §4.2.3 gives 550 for "mailbox not found", and nothing in
/// such a message says a filter answered. (A former heuristic read it as a
/// filtering gateway's; it was fitted to a few gateways and turned plain
/// answers of other MTAs soft.)
fn adjust_for_context(
    mut v: Verdict,
    cmd: Option<SmtpCommand>,
    status: Option<EnhancedStatus>,
) -> Verdict {
    let address_code = status.is_some_and(|s| s.subject == 1);
    // X.1.7 / X.1.8: the sender's address is bad (RFC 3463 §3.2)
    // and X.7.27, its domain has a null MX (RFC 7505)
    let sender_code = status.is_some_and(|s| {
        (s.subject == 1 && matches!(s.detail, 7 | 8)) || (s.subject == 7 && s.detail == 27)
    });
    let filter_code = status.is_some_and(|s| s.subject == 7 || (s.subject == 2 && s.detail == 0));
    let at = |c: Option<SmtpCommand>| {
        format!(
            "the server refused at {} (RFC 5321 §3.3)",
            c.map_or("?", |c| c.as_str())
        )
    };
    let (to, why) = match (cmd, v.category) {
        (Some(SmtpCommand::Data), Category::UserUnknown) if !address_code => {
            (Category::Filtered, at(cmd))
        }
        (_, Category::UserUnknown)
            if filter_code
                && v.rule
                    != format!(
                        "builtin:status:{}",
                        status.map(|s| s.to_string()).unwrap_or_default()
                    ) =>
        {
            (
                Category::Filtered,
                "its status code is a policy one (RFC 3463 §3.3, §3.8)".to_owned(),
            )
        }
        (
            Some(SmtpCommand::Connect | SmtpCommand::Helo),
            Category::UserUnknown
            | Category::HasMoved
            | Category::InvalidDomain
            | Category::AccountDisabled
            | Category::MailboxFull
            | Category::Filtered
            | Category::PolicyViolation
            | Category::ContentRejected
            | Category::SpamDetected
            | Category::Undefined,
        ) => (
            Category::Blocked,
            format!(
                "{}, before any recipient: the session was refused to the sending host (RFC 5321 §3.1, §4.1.1.1)",
                at(cmd)
            ),
        ),
        (
            Some(SmtpCommand::MailFrom),
            Category::UserUnknown
            | Category::InvalidDomain
            | Category::AccountDisabled
            | Category::HasMoved,
        ) => (Category::SenderRejected, at(cmd)),
        (
            _,
            Category::UserUnknown
            | Category::InvalidDomain
            | Category::DomainNotAccepting
            | Category::AccountDisabled
            | Category::HasMoved,
        ) if sender_code => (
            Category::SenderRejected,
            "its status code is about the sender's address (RFC 3463 §3.2 X.1.7, X.1.8; RFC 7505 X.7.27)"
                .to_owned(),
        ),
        _ => return v,
    };
    v.why = Explanation::Text(format!(
        "{}; but {why}, so it is {}",
        v.explanation(),
        to.describe()
    ));
    if !v.qualified {
        // nothing in the text explained it; the command answered does
        v.qualified = true;
        v.rule = SESSION_REFUSED.into();
    }
    (v.bounce_type, v.reason) = to.default_verdict();
    v.category = to;
    v
}

/// The built-in decision for an otherwise unexplained refusal at the
/// greeting or HELO/EHLO (see [`adjust_for_context`]).
const SESSION_REFUSED: &str = "builtin:session-refused";

/// RFC 3464 §2.3.3 `Action: failed` with a transient (4.X.X) status: the
/// reporting MTA gave up on a temporary condition, the "abandonment" of
/// RFC 3463 §2 — its queue lifetime ran out. A generic cause (the remote
/// system, the network, nothing) is then the expiry itself; a specific one
/// (mailbox full, rate limits, ...) stays what it is.
fn given_up_on_a_transient_failure(
    mut v: Verdict,
    action: Option<crate::model::Action>,
    status: Option<EnhancedStatus>,
) -> Verdict {
    let gave_up =
        action == Some(crate::model::Action::Failed) && status.is_some_and(|s| s.class == 4);
    if !gave_up
        || !matches!(
            v.category,
            Category::SystemError | Category::NetworkError | Category::Undefined
        )
    {
        return v;
    }
    v.why = Explanation::Text(format!(
        "{}; but the report failed it on a transient code (RFC 3464 §2.3.3, RFC 3463 §2): the queue lifetime ran out",
        v.explanation()
    ));
    (v.bounce_type, v.reason) = Category::Expired.default_verdict();
    v.category = Category::Expired;
    v.qualified = true;
    v
}

/// RFC 3463 §2: a 4.X.X status is a "persistent transient failure ...
/// sending in the future may be successful", and RFC 5321 §4.2.1 says the
/// same of a 4yz reply. Whatever its words, such a failure is never
/// `hard`: a wrong hard quarantines a live address at once.
fn never_hard_when_transient(
    mut v: Verdict,
    status: Option<EnhancedStatus>,
    reply: Option<crate::model::ReplyCode>,
) -> Verdict {
    let transient = match status {
        Some(s) => s.class == 4,
        None => reply.is_some_and(|c| c.class() == 4),
    };
    if !transient || v.bounce_type != BounceType::Hard {
        return v;
    }
    v.why = Explanation::Text(format!(
        "{}; but the code is a transient one (RFC 3463 §2, RFC 5321 §4.2.1), so it is soft",
        v.explanation()
    ));
    v.bounce_type = BounceType::Soft;
    v
}

fn build_set(patterns: &[String]) -> Result<RegexSet, regex::Error> {
    RegexSetBuilder::new(patterns)
        .case_insensitive(true)
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
}

fn domain_in_scope(domain: &str, scope: &str) -> bool {
    let scope = scope.trim_start_matches('.');
    domain.eq_ignore_ascii_case(scope)
        || (domain.len() > scope.len()
            && domain[domain.len() - scope.len()..].eq_ignore_ascii_case(scope)
            && domain.as_bytes()[domain.len() - scope.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(diag: &str) -> RecipientReport {
        let mut r = RecipientReport::new("kim@example.org".parse().expect("address"));
        r.diagnostic = Some(diag.to_owned());
        r.reply_code = crate::analysis::find_reply_code(diag);
        r.status = crate::analysis::find_status(diag);
        r.smtp_command = crate::analysis::find_smtp_command(diag);
        r
    }

    /// Rules in the rules file's format, all of one verdict.
    fn rules(spec: &[(&str, &str, i32)]) -> Vec<Rule> {
        let toml: String = spec
            .iter()
            .map(|(id, pattern, priority)| {
                format!(
                    "[[rule]]\nid = {id:?}\npattern = {pattern:?}\ntype = \"hard\"\n\
                     reason = \"user_unknown\"\ncategory = \"user_unknown\"\npriority = {priority}\n"
                )
            })
            .collect();
        parse_rules_toml(&toml, "test").expect("rules parse")
    }

    /// A bad rule is named by its id, the first in file order whatever the
    /// priorities; a repeated id is refused.
    #[test]
    fn a_rule_that_does_not_compile_is_named() {
        let bad = rules(&[
            ("fine", "user unknown", 50),
            ("broken", "unclosed (", 200),
            ("also-broken", "[z-a]", 10),
        ]);
        match RuleSet::compile(bad) {
            Err(RulesError::BadPattern { id, .. }) => assert_eq!(id, "broken"),
            other => panic!("expected a bad pattern, got {other:?}"),
        }
        let dup = rules(&[("same", "a", 1), ("same", "b", 2)]);
        assert!(matches!(
            RuleSet::compile(dup),
            Err(RulesError::Duplicate(id)) if id == "same"
        ));
        let ok = RuleSet::compile(rules(&[("low", "unknown", 20), ("high", "user", 10)]))
            .expect("compiles");
        assert_eq!(
            ok.first_match("user unknown", "example.org")
                .map(|r| r.id.as_str()),
            Some("high")
        );
    }

    /// Rules come from primary sources, never from sample bounces: each
    /// bundled rule names the document that says what its text means.
    #[test]
    fn every_bundled_rule_names_its_source() {
        let missing: Vec<String> = default_rules()
            .into_iter()
            .filter(|r| r.source.as_deref().is_none_or(|s| s.trim().len() < 12))
            .map(|r| r.id)
            .collect();
        assert!(missing.is_empty(), "rules without a source: {missing:?}");
    }

    /// Every built-in decision names its document too.
    #[test]
    fn every_builtin_decision_names_its_source() {
        let set = RuleSet::default_set();
        let mut verdicts = Vec::new();
        for hint in [
            Category::AutoReply,
            Category::SpamComplaint,
            Category::Delivered,
            Category::Delayed,
        ] {
            let mut r = report("");
            r.diagnostic = None;
            r.hint = Some(hint);
            verdicts.push(set.qualify(&r));
        }
        for diag in ["5.2.2", "550 5.7.27", "421 try", "552", "4.9.9 xyz", "zzz"] {
            verdicts.push(set.qualify(&report(diag)));
        }
        for v in verdicts {
            let source = set.source_of(&v).unwrap_or_default();
            assert!(source.len() > 12, "{}: {source:?}", v.rule);
        }
    }

    #[test]
    fn user_unknown_is_trusted_with_an_address_code_or_at_rcpt() {
        let rules = RuleSet::default_set();
        for diag in [
            "550 5.1.1 <kim@example.org>: Recipient address rejected: User unknown",
            "550 <kim@example.org>: User unknown (in reply to RCPT TO command)",
            "Unknown user: kim@example.org",
        ] {
            let v = rules.qualify(&report(diag));
            assert_eq!(
                (v.bounce_type, v.category),
                (BounceType::Hard, Category::UserUnknown),
                "{diag}"
            );
        }
    }

    /// RFC 5321 §4.2.3: 550 is "mailbox not found" as much as a policy
    /// refusal; with "unknown user" and nothing else, the words decide.
    #[test]
    fn a_bare_550_user_unknown_is_a_user_unknown_whoever_sent_it() {
        let rules = RuleSet::default_set();
        for diag in [
            "550 unknown user <kim@example.org>",
            "550 <kim@example.org>... User unknown",
            "550 Requested action not taken: mailbox unavailable (user unknown)",
        ] {
            let v = rules.qualify(&report(diag));
            assert_eq!(
                (v.bounce_type, v.category),
                (BounceType::Hard, Category::UserUnknown),
                "{diag}"
            );
        }
    }

    #[test]
    fn a_user_unknown_with_a_policy_code_or_after_data_is_a_filter_speaking() {
        let rules = RuleSet::default_set();
        for diag in [
            "550 5.7.1 <kim@example.org>: User unknown",
            "550 <kim@example.org>: User unknown (in reply to end of DATA command)",
        ] {
            let v = rules.qualify(&report(diag));
            assert_eq!(
                (v.bounce_type, v.reason, v.category),
                (BounceType::Soft, Reason::Refused, Category::Filtered),
                "{diag}"
            );
            assert!(v.explanation().contains("but"), "{}", v.explanation());
        }
    }

    /// Texts as the MTAs' sources and the providers' error-code pages give
    /// them (each rule's `source` names the document).
    #[test]
    fn published_phrasings_get_their_documented_meaning() {
        use Category as C;
        let rules = RuleSet::default_set();
        for (diag, want) in [
            // Google, "SMTP errors and codes" (2024 sender guidelines)
            ("550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.", C::AuthFailure),
            ("450-4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered.", C::RateLimited),
            ("552-5.2.2 The email account that you tried to reach is over quota.", C::MailboxFull),
            // Microsoft, Exchange Online / Outlook.com NDRs
            ("550 5.7.515 Access denied, sending domain example.com does not meet the required authentication level.", C::AuthFailure),
            ("451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.", C::BadReputation),
            ("550 4.4.7 QUEUE.Expired; message expired", C::Expired),
            // Yahoo Sender Hub
            ("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints", C::RateLimited),
            ("550 5.2.2 Submission quota exceeded", C::RateLimited),
            ("550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.", C::Blocked),
            ("452 4.3.1 Insufficient system storage", C::SystemError),
            // Postfix local(8), bounce(5), smtp(8)
            ("cannot update mailbox /var/mail/kim for user kim. error writing message: File too large", C::MailboxFull),
            ("mail transport unavailable", C::SystemError),
            // Dovecot quota plugin
            ("552 5.2.2 <kim@example.org> Quota exceeded (mailbox for user is full)", C::MailboxFull),
            // qmail-send / qmail-remote
            ("I'm not going to try again; this message has been in the queue too long.", C::Expired),
            ("Sorry. Although I'm listed as a best-preference MX or A for that host, it isn't in my control/locals file, so I don't treat it as local. (#5.4.6)", C::NetworkError),
            ("Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)", C::NetworkError),
            ("Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)", C::InvalidDomain),
            // Exim
            ("retry timeout exceeded", C::Expired),
            ("remote host address is the local host", C::SystemError),
            // Sendmail
            ("Cannot send message for 5 days", C::Expired),
            // OpenSMTPD
            ("Envelope expired", C::Expired),
        ] {
            let v = rules.qualify(&report(diag));
            assert_eq!(v.category, want, "{diag}: {}", v.explanation());
            assert_ne!(v.bounce_type, BounceType::Hard, "{diag}");
        }
    }

    /// Codes about the sender's address make the words about an address
    /// the sender's; a reply that names no cause stays to qualify.
    #[test]
    fn sender_codes_and_causeless_replies() {
        let rules = RuleSet::default_set();
        for diag in [
            "553 5.1.8 <bounces@example.com>... Domain of sender address bounces@example.com does not exist",
            "550 5.7.27 Sender address has null MX",
            // Postfix smtpd_check.c, Exim verify = sender
            "550 5.1.0 <bounces@example.com>: Sender address rejected: User unknown in local recipient table",
            "450 4.1.8 <bounces@example.com>: Sender address rejected: Domain not found",
            "550-Verification failed for <bounces@example.com> 550-Unrouteable address 550 Sender verify failed",
        ] {
            let v = rules.qualify(&report(diag));
            assert_eq!(v.category, Category::SenderRejected, "{diag}: {}", v.explanation());
            assert_eq!(v.bounce_type, BounceType::Soft);
        }
        let v = rules.qualify(&report("554 Transaction failed"));
        assert_eq!((v.category, v.qualified), (Category::Undefined, false));
    }

    /// A server that refuses the session before any recipient was named
    /// refuses the sending host, whatever its words.
    #[test]
    fn a_refusal_at_the_greeting_or_helo_blocks_the_host_not_the_address() {
        let rules = RuleSet::default_set();
        for diag in [
            // Postfix smtp_proto.c: a greeting other than 220
            "host mx.example.org[192.0.2.1] refused to talk to me: 554 5.7.1 Access denied",
            // Exim: the reply to EHLO
            "SMTP error from remote mail server after EHLO mta.example.com: 550 Rejected",
        ] {
            let v = rules.qualify(&report(diag));
            assert_eq!(
                (v.bounce_type, v.category, v.qualified),
                (BounceType::Soft, Category::Blocked, true),
                "{diag}: {}",
                v.explanation()
            );
            assert!(v.sender_side());
            assert!(builtin_source(&v.rule).is_none_or(|s| s.contains("RFC 5321")));
        }
        // a cause a rule names about the session or the remote system stays
        for (diag, want) in [
            (
                "SMTP error from remote mail server after EHLO mta.example.com: 550 5.7.25 Reverse DNS validation failed",
                Category::MissingPtr,
            ),
            (
                "host mx.example.org[192.0.2.1] refused to talk to me: 554 No SMTP service here",
                Category::DomainNotAccepting,
            ),
        ] {
            let v = rules.qualify(&report(diag));
            assert_eq!(v.category, want, "{}", v.explanation());
        }
    }

    #[test]
    fn a_transient_code_is_never_hard() {
        let rules = RuleSet::default_set();
        for diag in [
            "450 4.1.1 <kim@example.org>: Recipient address rejected: unverified address",
            "450 <kim@example.org>: User unknown in local recipient table",
        ] {
            let v = rules.qualify(&report(diag));
            assert_eq!(
                (v.bounce_type, v.category),
                (BounceType::Soft, Category::UserUnknown),
                "{diag}"
            );
        }
    }

    #[test]
    fn delay_warnings_count_as_configured_and_keep_their_cause() {
        let mut r = report("452 4.2.2 mailbox full");
        r.hint = Some(Category::Delayed);
        let v = RuleSet::default_set().qualify(&r);
        assert_eq!(
            (v.bounce_type, v.reason, v.category),
            (BounceType::Soft, Reason::MailboxFull, Category::Delayed)
        );
        let v = RuleSet::default_set()
            .with_delay_warnings(DelayWarnings::Ignored)
            .qualify(&r);
        assert_eq!(v.bounce_type, BounceType::Ignored);

        // the sender's own fault never counts against the address
        let mut r = report("450 4.7.25 Client host rejected: cannot find your hostname");
        r.hint = Some(Category::Delayed);
        let v = RuleSet::default_set().qualify(&r);
        assert!(v.sender_side(), "{v:?}");
    }
}
