//! The acted-out causes of the real-MTA truth set (`tests/mta_truth.rs`).
//!
//! Each case is one recipient. The scripted peer answers it as [`Act`] says,
//! or the MTA fails it by itself; the expected verdict is written next to the
//! reply, with the primary source that says what the reply means. Replies
//! are quoted from those sources (the provider's or MTA's published texts,
//! RFC 5321 / RFC 3463 and the IANA enhanced-status registry), never from a
//! bounce corpus; `[ip]`-style placeholders are filled with loopback values.
//!
//! How the expected values are derived:
//! - `category` is the cause that was acted out, in inmail's taxonomy; the
//!   expected `type` and `reason` are that category's defaults
//!   (`Category::default_verdict`), which is the project's written policy.
//! - `status` is the most specific enhanced code the bounce carries for the
//!   recipient: the remote server's when its reply has one, else what the MTA
//!   writes in `Status:` for a bare reply (the class, `5.0.0` / `4.0.0`, for
//!   Postfix, Exim and OpenSMTPD; Sendmail's own mapping); for failures an
//!   MTA makes itself, the code that MTA's documentation or source gives
//!   ([`made_status`]).
//! - A temporary reply is repeated until the queue lifetime runs out: the MTA
//!   first sends a delay warning (expected: type soft, category `delayed`, or
//!   the cause's category when the cause is on the sender's side, reason the
//!   cause's reason), then gives up (expected: the cause's category when it
//!   names the recipient's state or the sender's standing, else `expired`).

use inmail::model::Category;

/// What happens to one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// The peer answers RCPT TO with this reply (lines separated by `\n`).
    Rcpt(&'static str),
    /// The peer accepts the recipient and answers the end of DATA with this
    /// reply; such a case is alone in its message.
    Data(&'static str),
    /// The peer answers RCPT TO with this temporary reply every time.
    Temp(&'static str),
    /// A local part of the MTA's own domain `local.test`, where no user exists.
    UnknownLocalUser,
    /// A domain under `.invalid` (RFC 2606), looked up by the MTA.
    NoSuchDomain,
    /// A domain routed to a loopback port where nothing listens.
    ConnectionRefused,
    /// A domain routed to the MTA's own second listener, which relays for nobody.
    RelayDenied,
    /// A message over the 4000-byte limit of the MTA's own second listener.
    TooLarge,
}

impl Act {
    /// The MTA keeps retrying this recipient: a delay warning comes first.
    pub fn temporary(self) -> bool {
        matches!(self, Act::Temp(_) | Act::ConnectionRefused)
    }

    /// The peer's reply, when the peer is the one answering.
    pub fn reply(self) -> Option<&'static str> {
        match self {
            Act::Rcpt(r) | Act::Data(r) | Act::Temp(r) => Some(r),
            _ => None,
        }
    }
}

pub struct Case {
    pub id: &'static str,
    pub act: Act,
    /// The cause, in inmail's taxonomy (see the module comment).
    pub category: Category,
    /// The recipient's local part and domain are UTF-8 (RFC 6531 / 6533).
    pub utf8: bool,
    /// Where the reply text and its meaning come from.
    pub source: &'static str,
}

use Act::*;
use Category as C;

const fn case(id: &'static str, act: Act, category: Category, source: &'static str) -> Case {
    Case {
        id,
        act,
        category,
        utf8: false,
        source,
    }
}

const fn utf8(id: &'static str, act: Act, category: Category, source: &'static str) -> Case {
    Case {
        id,
        act,
        category,
        utf8: true,
        source,
    }
}

const GMAIL: &str = "Gmail SMTP error reference, support.google.com/a/answer/3726730";
const MS: &str = "Microsoft Learn, Exchange Online NDRs and SMTP errors (learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online)";
const YAHOO: &str = "Yahoo Sender Hub, SMTP error codes (senders.yahooinc.com/smtp-error-codes)";
const RFC3463: &str =
    "RFC 3463 section 3 and the IANA SMTP Enhanced Status Codes registry (the code's own wording)";
const RFC5321: &str = "RFC 5321 section 4.2.2/4.2.3 (reply codes and their example texts)";
const RFC7372: &str = "RFC 7372 section 3 (email authentication status codes), IANA registry";
const POSTFIX: &str = "Postfix smtpd(8) / smtpd_check.c reply texts, postfix.org/postconf.5.html";
const SENDMAIL: &str = "Sendmail 8.17 source (srvrsmtp.c, parseaddr.c) reply texts";

/// The cases, in the order their messages are sent.
pub const CASES: &[Case] = &[
    // --- the mailbox does not exist
    case("t001", Rcpt("550 5.1.1 The email account that you tried to reach does not exist. Please try\ndouble-checking the recipient's email address for typos or\nunnecessary spaces. For more information, go to\nhttps://support.google.com/mail/?p=NoSuchUser"), C::UserUnknown, GMAIL),
    case("t002", Rcpt("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"), C::UserUnknown, MS),
    case("t003", Rcpt("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"), C::UserUnknown, MS),
    case("t004", Rcpt("554 delivery error: dd This user doesn't have a yahoo.com account (rcpt@yahoo.com) [0] - mta1001.mail.gq1.yahoo.com"), C::UserUnknown, YAHOO),
    case("t005", Rcpt("550 5.1.1 <rcpt@peer.test>: Recipient address rejected: User unknown in virtual mailbox table"), C::UserUnknown, POSTFIX),
    case("t006", Rcpt("550 5.1.1 <rcpt@peer.test>... User unknown"), C::UserUnknown, SENDMAIL),
    case("t007", Rcpt("550 Unknown user"), C::UserUnknown, "Exim 4.96 default configure, router localuser: cannot_route_message = Unknown user, given at RCPT by verify = recipient"),
    case("t008", Rcpt("550 5.1.1 Bad destination mailbox address"), C::UserUnknown, RFC3463),
    case("t009", Rcpt("550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [BN8NAM12FT061.eop-nam12.prod.protection.outlook.com]"), C::UserUnknown, "Microsoft Learn, Directory-Based Edge Blocking: 550 5.4.1 Recipient address rejected: Access denied means the recipient does not exist in the directory"),
    case("t010", Rcpt("550 No such user here"), C::UserUnknown, "RFC 5321 section 3.4 example reply text (550 No such user here)"),
    // --- moved
    case("t011", Rcpt("551 User not local; please try <forward@peer.test>"), C::HasMoved, "RFC 5321 section 3.4 (551 User not local; please try <forward-path>)"),
    case("t012", Rcpt("550 5.1.6 Destination mailbox has moved, No forwarding address"), C::HasMoved, RFC3463),
    // --- domain
    case("t013", Rcpt("553 5.1.2 We weren't able to find the recipient domain. Please check for any\nspelling errors, and make sure you didn't enter any spaces, periods,\nor other punctuation after the recipient's email address."), C::InvalidDomain, GMAIL),
    case("t014", Rcpt("550 5.1.2 Bad destination system address"), C::InvalidDomain, RFC3463),
    case("t015", Rcpt("556 5.1.10 Recipient address has null MX"), C::DomainNotAccepting, "RFC 7505 section 4.1 (556 5.1.10 for a domain with a null MX)"),
    // --- mailbox full
    case("t016", Rcpt("552 5.2.2 The email account that you tried to reach is over quota and inactive.\nPlease direct the recipient to\nhttps://support.google.com/mail/?p=OverQuotaPerm"), C::MailboxFull, GMAIL),
    case("t017", Rcpt("554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent exception with message"), C::MailboxFull, MS),
    case("t018", Rcpt("552 5.2.2 <rcpt@peer.test> Quota exceeded (mailbox for user is full)"), C::MailboxFull, "Dovecot LMTP, quota_exceeded_message default (doc.dovecot.org, quota plugin)"),
    case("t019", Rcpt("552 Requested mail action aborted: exceeded storage allocation"), C::MailboxFull, RFC5321),
    case("t020", Rcpt("552 5.2.2 Mailbox full"), C::MailboxFull, RFC3463),
    // --- disabled
    case("t021", Rcpt("550 5.2.1 The email account that you tried to reach is disabled.\nhttps://support.google.com/mail/?p=DisabledUser"), C::AccountDisabled, GMAIL),
    case("t022", Rcpt("554 delivery error: dd Sorry your message to rcpt@yahoo.com cannot be delivered. This mailbox is disabled (554.30). - mta1002.mail.bf1.yahoo.com"), C::AccountDisabled, YAHOO),
    case("t023", Rcpt("550 5.2.1 Mailbox disabled, not accepting messages"), C::AccountDisabled, RFC3463),
    // --- the sender's IP, domain or authentication
    case("t024", Rcpt("550 5.7.1 [127.0.0.1] Our system has detected an unusual rate of\nunsolicited mail originating from your IP address. To protect our\nusers from spam, mail sent from your IP address has been blocked."), C::Blocked, GMAIL),
    case("t025", Rcpt("550 5.7.606 Access denied, banned sending IP [127.0.0.1]. To request removal from this list please visit https://sender.office.com/ and follow the directions."), C::Blocked, MS),
    case("t026", Rcpt("553 5.7.1 [BL21] Connections will not be accepted from 127.0.0.1, because the ip is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes"), C::Blocked, YAHOO),
    case("t027", Rcpt("554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/127.0.0.1"), C::Blocked, POSTFIX),
    case("t028", Rcpt("550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains."), C::Blocked, MS),
    case("t029", Rcpt("550 5.7.26 This mail has been blocked because the sender is unauthenticated.\nGmail requires all senders to authenticate with either SPF or DKIM."), C::AuthFailure, GMAIL),
    case("t030", Rcpt("550 5.7.509 Access denied, sending domain [sender.test] does not pass DMARC verification and has a DMARC policy of reject."), C::AuthFailure, MS),
    case("t031", Rcpt("550 5.7.515 Access denied, sending domain [sender.test] doesn't meet the required authentication level."), C::AuthFailure, MS),
    case("t032", Rcpt("550 5.7.23 SPF validation failed"), C::AuthFailure, RFC7372),
    case("t033", Rcpt("550 5.7.20 No passing DKIM signature found"), C::AuthFailure, RFC7372),
    case("t034", Rcpt("550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to authenticate with either SPF or DKIM."), C::AuthFailure, YAHOO),
    case("t035", Rcpt("550 5.7.25 The IP address sending this message does not have a PTR record setup, or\nthe corresponding forward DNS entry does not point to the sending IP."), C::MissingPtr, GMAIL),
    case("t036", Rcpt("550 5.7.25 Reverse DNS validation failed"), C::MissingPtr, RFC7372),
    case("t037", Rcpt("550 5.7.27 Sender address has null MX"), C::SenderRejected, "RFC 7505 section 4.2 (550 5.7.27 for a sender domain with a null MX)"),
    case("t038", Rcpt("553 5.1.8 <bounces@sender.test>... Domain of sender address bounces@sender.test does not exist"), C::SenderRejected, SENDMAIL),
    case("t039", Rcpt("550 5.1.8 Access denied, bad outbound sender"), C::SenderRejected, MS),
    // --- relay, policy, security
    case("t040", Rcpt("554 5.7.1 <rcpt@peer.test>: Relay access denied"), C::RelayDenied, POSTFIX),
    case("t041", Rcpt("553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"), C::RelayDenied, "qmail-smtpd.c (netqmail 1.06) reply for a domain not in rcpthosts"),
    case("t042", Rcpt("550 5.7.1 <rcpt@peer.test>... Relaying denied"), C::RelayDenied, SENDMAIL),
    case("t043", Rcpt("550 5.7.1 The user or domain that you are sending to (or from) has a policy that\nprohibited the mail that you sent. Please contact your domain\nadministrator for further details."), C::PolicyViolation, GMAIL),
    // the group accepts mail only from the senders on its list (Exchange's
    // AcceptMessagesOnlyFrom delivery restriction): the refusal is about
    // the sender, as RFC 3463 X.7.2 "mailing list expansion prohibited" is
    case("t044", Rcpt("550 5.7.124 Delivery not authorized, message refused: sender not in allowed-senders list"), C::SenderRejected, MS),
    case("t045", Rcpt("554 5.7.9 Message not accepted for policy reasons. See https://postmaster.yahooinc.com/error-codes"), C::PolicyViolation, YAHOO),
    case("t046", Rcpt("550 5.7.30 REQUIRETLS support required"), C::SecurityError, "RFC 8689 section 5 and the IANA registry (X.7.30 REQUIRETLS support required)"),
    case("t047", Rcpt("530 5.7.0 Must issue a STARTTLS command first."), C::SecurityError, GMAIL),
    case("t048", Rcpt("555 5.5.2 Syntax error."), C::SyntaxError, GMAIL),
    case("t049", Rcpt("554 Transaction failed"), C::Undefined, "RFC 5321 section 4.2.3 (554 Transaction failed, no cause given)"),
    // --- UTF-8 recipients (SMTPUTF8)
    utf8("t050", Rcpt("550 5.1.1 The email account that you tried to reach does not exist."), C::UserUnknown, GMAIL),
    utf8("t051", Rcpt("552 5.2.2 Mailbox full"), C::MailboxFull, RFC3463),
    utf8("t052", Rcpt("550 5.2.1 Mailbox disabled, not accepting messages"), C::AccountDisabled, RFC3463),
    // --- answered after DATA: each alone in its message
    case("t053", Data("550 5.7.1 [127.0.0.1] Our system has detected that this message is likely\nunsolicited mail. To reduce the amount of spam sent to Gmail, this\nmessage has been blocked."), C::SpamDetected, GMAIL),
    case("t054", Data("554 5.7.0 Reject, id=01234-05 - INFECTED: Eicar-Signature"), C::VirusDetected, "amavisd-new documentation, reply to a message with a virus (final_virus_destiny D_REJECT)"),
    case("t055", Data("552 5.3.4 Your message exceeded Google's message size limits."), C::MessageTooLarge, GMAIL),
    case("t056", Data("554 5.6.0 Mail message is malformed. Not accepted."), C::NotCompliant, GMAIL),
    case("t057", Data("550 5.7.26 Unauthenticated email from sender.test is not accepted due to domain's\nDMARC policy. Please contact the administrator of sender.test domain."), C::AuthFailure, GMAIL),
    case("t058", Data("550 5.7.1 Message rejected due to content restrictions"), C::ContentRejected, "Microsoft Learn, Exchange Online NDR 5.7.1 (content or transport rule restriction)"),
    // --- temporary, repeated until the queue lifetime runs out
    case("t059", Temp("452 4.2.2 The email account that you tried to reach is over quota. Please direct\nthe recipient to https://support.google.com/mail/?p=OverQuotaTemp"), C::MailboxFull, GMAIL),
    case("t060", Temp("451 4.7.650 The mail server [127.0.0.1] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://aka.ms/postmaster"), C::BadReputation, MS), // the throttling is the effect, the IP's reputation the cause
    case("t061", Temp("421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"), C::RateLimited, YAHOO),
    case("t062", Temp("450 4.2.1 The user you are trying to contact is receiving mail at a rate that\nprevents additional messages from being delivered. Please resend your\nmessage at a later point."), C::RateLimited, GMAIL),
    case("t063", Temp("450 4.1.2 <rcpt@peer.test>: Recipient address rejected: Domain not found"), C::InvalidDomain, POSTFIX),
    case("t064", Temp("451 4.3.0 Mail server temporarily rejected message."), C::Expired, GMAIL),
    // --- failures the MTA makes itself
    case("t065", UnknownLocalUser, C::UserUnknown, "the MTA's local delivery (Postfix local(8), Exim router cannot_route_message, Sendmail/OpenSMTPD local user lookup)"),
    case("t066", NoSuchDomain, C::InvalidDomain, "the MTA's DNS lookup of a .invalid domain (RFC 2606 section 2)"),
    case("t067", ConnectionRefused, C::Expired, "the MTA's connection to a closed loopback port, retried until the queue lifetime runs out"),
    case("t068", RelayDenied, C::RelayDenied, "the same MTA's second listener, which relays for no client"),
    case("t069", TooLarge, C::MessageTooLarge, "the same MTA's second listener, limited to 4000-byte messages"),
    case("t070", UnknownLocalUser, C::UserUnknown, "as t065, in a message with several recipients"),
    // --- the sender, not the recipient: words a recipient rule could match
    case("t071", Rcpt("550 5.1.0 <bounces@sender.test>: Sender address rejected: User unknown in local recipient table"), C::SenderRejected, POSTFIX),
    case("t072", Rcpt("550-Verification failed for <bounces@sender.test>\nUnrouteable address\nSender verify failed"), C::SenderRejected, "Exim 4.96 ACL verify = sender, the reply it gives when the sender does not verify"),
    case("t073", Rcpt("550 5.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.1]"), C::MissingPtr, POSTFIX),
    case("t074", Rcpt("550 5.7.1 Rejected: 127.0.0.1 listed at zen.spamhaus.org"), C::Blocked, "Sendmail cf/README, FEATURE(dnsbl) default reply"),
    case("t075", Rcpt("550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP."), C::Blocked, MS),
    case("t076", Rcpt("550 5.7.511 Access denied, banned sender[127.0.0.1]. To request removal from this list please forward this message to delist@microsoft.com."), C::Blocked, MS),
    case("t077", Rcpt("550 5.2.2 Submission quota exceeded"), C::RateLimited, "Microsoft Learn, Exchange Online NDR 5.2.2 (the sender exceeded its recipient or message rate limit)"),
    case("t078", Rcpt("554 5.7.1 <rcpt@peer.test>: Recipient address rejected: Access denied"), C::PolicyViolation, POSTFIX),
    case("t079", Rcpt("552 5.2.3 Message length exceeds administrative limit"), C::MessageTooLarge, RFC3463),
    case("t080", Rcpt("554 5.4.6 Routing loop detected"), C::NetworkError, "RFC 3463 section 3.5 (X.4.6 is a network and routing status, as the IANA registry files it)"),
    case("t081", Temp("452 4.5.3 Too many recipients"), C::RateLimited, "RFC 5321 section 4.5.3.1.10 (452 too many recipients) and RFC 3463 X.5.3"),
    case("t082", Temp("450 4.1.8 <bounces@sender.test>: Sender address rejected: Domain not found"), C::SenderRejected, POSTFIX),
    case("t083", Temp("452 4.3.1 Insufficient system storage"), C::Expired, POSTFIX),
    case("t084", Temp("451 Temporary local problem - please try later"), C::Expired, "Exim 4.96, reply when a check it needs fails for now (acl.c)"),
    case("t085", Rcpt("554 5.3.5 System incorrectly configured"), C::SystemError, RFC3463),
];

/// The messages: which cases share one, in sending order. Permanent failures
/// are grouped 1 to 4 per message so that bounces list several recipients
/// with different causes; DATA answers, the size case and temporary failures
/// (which bounce later) each have a message of their own.
pub fn groups(mta: &str) -> Vec<Vec<&'static Case>> {
    let mut out: Vec<Vec<&Case>> = Vec::new();
    let mut permanent: Vec<&Case> = Vec::new();
    let mut temporary: Vec<&Case> = Vec::new();
    for c in CASES.iter().filter(|c| applies(mta, c)) {
        match c.act {
            // a 421 closes the session: the MTA defers the recipients after it
            // with the same reply, so it goes alone
            Data(_) | TooLarge => out.push(vec![c]),
            Temp(r) if r.starts_with("421") => out.push(vec![c]),
            a if a.temporary() => temporary.push(c),
            _ => permanent.push(c),
        }
    }
    // OpenSMTPD spreads a message's failures over one or more bounces
    // depending on timing, so which recipients share a bounce (and how a
    // reader copes with it) would change from run to run: one recipient per
    // message there.
    let sizes: &[usize] = if mta == "opensmtpd" {
        &[1]
    } else {
        &[1, 2, 3, 4]
    };
    let mut i = 0;
    let mut rest = permanent.as_slice();
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
        i += 1;
    }
    // one per message: the order in which an MTA lists the recipients it is
    // still retrying changes from run to run
    for c in temporary {
        out.push(vec![c]);
    }
    out
}

/// Whether the system resolver says a `.invalid` name does not exist (the
/// MTAs ask it for `nxdomain.invalid`); without a DNS server it can only say
/// "try again", and the no-such-domain case is left out.
pub static RESOLVER_ANSWERS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(true);

/// Whether an MTA can act a case out. UTF-8 addresses need SMTPUTF8:
/// OpenSMTPD 6.8 has none (it refuses them, 501 5.1.3) and Debian builds
/// Sendmail without USE_EAI (555 5.5.4 SMTPUTF8 parameter unrecognized).
/// OpenSMTPD's one message size limit applies to every listener, so it
/// cannot refuse a size it accepted; and it refuses a relay with the words it
/// uses for an unknown user (`550 Invalid recipient`), so a relay denial it
/// makes cannot be told from one. A refused connection puts its route on a
/// back-off of minutes, so neither a warning nor expiry comes in time.
pub fn applies(mta: &str, c: &Case) -> bool {
    if c.act == NoSuchDomain && !RESOLVER_ANSWERS.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    match mta {
        "opensmtpd" => !c.utf8 && !matches!(c.act, TooLarge | RelayDenied | ConnectionRefused),
        "sendmail" => !c.utf8,
        _ => true,
    }
}

/// Whether the MTA's report that it gave up on a temporary failure can be
/// waited for. OpenSMTPD 6.8 expires the envelopes at the 40 s lifetime, but
/// the bounces it then makes stay queued and expire in turn (its log:
/// `Expire for ...: from=<@>, to=<bounces@sender.test>, ... Envelope
/// expired`), so only its delay warnings are scored.
pub fn reports_expiry(mta: &str) -> bool {
    mta != "opensmtpd"
}

/// The enhanced status code the bounce should carry (see the module comment).
pub fn expected_status(mta: &str, c: &Case, final_bounce: bool) -> Option<String> {
    if let Some(reply) = c.act.reply() {
        let status = reply_status(reply);
        if !status.ends_with(".0.0") {
            return Some(status);
        }
        // a bare reply: the code the MTA writes in its Status field
        let expired = c.act.temporary() && final_bounce;
        return Some(match mta {
            // Sendmail maps the reply code (deliver.c, smtptodsn()) and says
            // 4.4.7 when the queue lifetime ran out
            "sendmail" if expired => "4.4.7".to_string(),
            "sendmail" => sendmail_code(&reply[..3]).map_or(status, str::to_string),
            // Exim's failure report says 5.0.0, whatever the last reply
            "exim" if expired => "5.0.0".to_string(),
            _ => status,
        });
    }
    made_status(mta, c.act, final_bounce).map(str::to_string)
}

/// The enhanced code of an SMTP reply, or its class when it has none
/// (RFC 3463 section 3.1: X.0.0 is the "other or undefined" detail). qmail's
/// `(#5.7.1)` trailer counts as the code it is.
pub fn reply_status(reply: &str) -> String {
    let first = reply.lines().next().unwrap_or("");
    let mut words = first.split_whitespace();
    let code = words.next().unwrap_or("");
    if let Some(w) = words.next() {
        if is_enhanced(w) {
            return w.to_string();
        }
    }
    if let Some(pos) = first.find("(#") {
        let tail = &first[pos + 2..];
        if let Some(end) = tail.find(')') {
            if is_enhanced(&tail[..end]) {
                return tail[..end].to_string();
            }
        }
    }
    format!("{}.0.0", &code[..1])
}

/// Sendmail's enhanced code for a bare SMTP reply code, as its bounces show it.
fn sendmail_code(code: &str) -> Option<&'static str> {
    match code {
        "550" => Some("5.1.1"),
        "551" => Some("5.1.6"),
        "552" => Some("5.2.2"),
        "553" => Some("5.1.3"),
        "451" => Some("4.3.0"),
        _ => None,
    }
}

fn is_enhanced(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The code each MTA documents for a failure it makes itself; None where the
/// MTA gives no specific code (then status is not scored for that case).
pub fn made_status(mta: &str, act: Act, final_bounce: bool) -> Option<&'static str> {
    match (mta, act) {
        // Postfix: local(8) "unknown user" is 5.1.1; smtp(8) DNS NXDOMAIN is
        // 5.4.4 (dns_lookup.c); a refused connection is 4.4.1 (smtp_connect.c);
        // a relay refusal by smtpd is 5.7.1; the client's own size check
        // against the server's SIZE is 5.3.4 (smtp_proto.c).
        ("postfix", UnknownLocalUser) => Some("5.1.1"),
        ("postfix", NoSuchDomain) => Some("5.4.4"),
        ("postfix", ConnectionRefused) => Some("4.4.1"),
        ("postfix", RelayDenied) => Some("5.7.1"),
        ("postfix", TooLarge) => Some("5.3.4"),
        // Exim 4.96 writes `Status: 5.0.0` in a failure report and `4.0.0` in
        // a delay warning for every failure it makes itself (deliver.c), and
        // its own smtp server replies carry no enhanced code.
        ("exim", ConnectionRefused) if !final_bounce => Some("4.0.0"),
        ("exim", _) => Some("5.0.0"),
        // Sendmail: the local mailer's "User unknown" 5.1.1, "Host unknown"
        // 5.1.2, "Relaying denied" 5.7.1, its own size check against the
        // server's SIZE 5.2.3 ("Message is too large"), a refused
        // connection 4.4.1 and, when the queue lifetime ends, 4.4.7
        // ("Message could not be delivered for ...").
        ("sendmail", UnknownLocalUser) => Some("5.1.1"),
        ("sendmail", NoSuchDomain) => Some("5.1.2"),
        ("sendmail", RelayDenied) => Some("5.7.1"),
        ("sendmail", TooLarge) => Some("5.2.3"),
        ("sendmail", ConnectionRefused) => Some(if final_bounce { "4.4.7" } else { "4.4.1" }),
        // OpenSMTPD writes `Status: 5.0.0` for every failure it reports.
        ("opensmtpd", UnknownLocalUser | NoSuchDomain) => Some("5.0.0"),
        _ => None,
    }
}
