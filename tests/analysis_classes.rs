//! The defect classes of issue 19, each pinned by a message written from the
//! format's own specification or the MTA's source (never from a sample
//! bounce): RFC 3464 for DSNs, Postfix's bounce(5) templates, Exim's
//! deliver.c and moan.c, qmail-send's and qmail-local's texts.

mod common;

use inmail::analysis::Analyzer;
use inmail::model::{BounceType, Category, MessageKind};

fn analyse(raw: &str) -> inmail::analysis::Analysis {
    Analyzer::default().analyse(raw.replace('\n', "\r\n").as_bytes())
}

/// (address, type, category) of every recipient.
fn outcome(raw: &str) -> (MessageKind, Vec<(String, BounceType, Category)>) {
    let a = analyse(raw);
    let v = common::verdicts(&a);
    (
        a.kind,
        a.recipients
            .iter()
            .zip(v)
            .map(|(r, v)| (r.address.to_string(), v.bounce_type, v.category))
            .collect(),
    )
}

/// Postfix's failure template (bounce.cf.default) with its RFC 3464 part,
/// for a local recipient of a host whose name has no dot, marked
/// `Auto-Submitted: auto-replied` as Postfix marks its bounces.
const POSTFIX_LOCALHOST: &str = r#"Return-Path: <>
From: MAILER-DAEMON@localhost (Mail Delivery System)
To: sender@example.com
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host localhost.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<nobody@localhost>: unknown user: "nobody"

--B1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; localhost
X-Postfix-Queue-ID: 4F1A2B
X-Postfix-Sender: rfc822; sender@example.com

Final-Recipient: rfc822; nobody@localhost
Original-Recipient: rfc822;nobody@localhost
Action: failed
Status: 5.1.1
Diagnostic-Code: X-Postfix; unknown user: "nobody"

--B1--
"#;

#[test]
fn a_delivery_status_part_makes_a_dsn_whatever_auto_submitted_says() {
    let (kind, rcpts) = outcome(POSTFIX_LOCALHOST);
    assert_eq!(kind, MessageKind::Dsn);
    assert_eq!(
        rcpts,
        vec![(
            "nobody@localhost".to_owned(),
            BounceType::Hard,
            Category::UserUnknown
        )]
    );
}

/// A DSN whose Final-Recipient cannot be read at all is still a DSN, with
/// the reason, never an auto-reply from MAILER-DAEMON.
#[test]
fn a_delivery_report_with_an_unreadable_recipient_says_so() {
    let raw = POSTFIX_LOCALHOST
        .replace("rfc822; nobody@localhost", "rfc822; nobody")
        .replace("rfc822;nobody@localhost", "rfc822;nobody")
        .replace("<nobody@localhost>: ", "<nobody>: ");
    let a = analyse(&raw);
    assert_eq!(a.kind, MessageKind::Dsn);
    assert!(a.recipients.is_empty(), "{:?}", a.recipients);
    assert_eq!(
        a.error.as_deref(),
        Some(inmail::analysis::UNREADABLE_RECIPIENT)
    );
}

/// Exim's moan.c (ERRMESS_BADADDRESS): sent from the daemon with
/// `Auto-Submitted: auto-replied`, no SMTP code at all.
#[test]
fn an_exim_malformed_address_report_is_a_bounce_for_that_address() {
    let raw = r#"From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: sender@example.com
Auto-Submitted: auto-replied
Subject: Mail failure - malformed recipient address

A message that you sent contained one or more recipient addresses that were
incorrectly constructed:

  kim@example.org extra: malformed address: extra may not follow kim@example.org

This address has been ignored. There were no other addresses in your
message, and so no attempt at delivery was possible.

------ This is a copy of the headers that were received before the error
       was detected.

From: sender@example.com
To: kim@example.org extra
Subject: hello
"#;
    let (kind, rcpts) = outcome(raw);
    assert_eq!(kind, MessageKind::Bounce);
    // soft: the address was malformed as written, and the one read out of
    // it may be live
    assert_eq!(
        rcpts,
        vec![(
            "kim@example.org".to_owned(),
            BounceType::Soft,
            Category::UserUnknown
        )]
    );
}

/// qmail-send's failure text, with qmail-local's quota bounce, for a
/// sender that mailed itself: the failed recipient is also the bounce's To.
#[test]
fn a_recipient_that_is_also_the_bounce_address_is_kept_where_the_report_lists_it() {
    let raw = r#"Return-Path: <>
From: MAILER-DAEMON@mail.example.org
To: kim@example.org
Subject: failure notice

Hi. This is the qmail-send program at mail.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<kim@example.org>:
The users mailfolder is over the allowed quota (size). (#5.2.2)

--- Below this line is a copy of the message.

Return-Path: <kim@example.org>
From: kim@example.org
To: kim@example.org
Subject: note to self

remember the milk
"#;
    let (kind, rcpts) = outcome(raw);
    assert_eq!(kind, MessageKind::Bounce);
    assert_eq!(
        rcpts,
        vec![(
            "kim@example.org".to_owned(),
            BounceType::Soft,
            Category::MailboxFull
        )]
    );
}

/// The reporting host's role addresses (RFC 2142, RFC 5321 §4.5.1) are never
/// a failed recipient, whatever follows their local part.
#[test]
fn the_reporting_hosts_postmaster_is_never_the_recipient() {
    let raw = r#"Return-Path: <>
From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>
To: sender@example.com
Subject: Returned mail: see transcript for details

The original message was received at Mon, 1 Dec 2026 10:00:00 GMT
from localhost [127.0.0.1]

   ----- The following addresses had permanent fatal errors -----
<kim@example.org>
    (reason: 550 5.1.1 <kim@example.org>... User unknown)

   ----- Questions about this report -----
Postmaster+help@mx.example.net answers them.
"#;
    let (_, rcpts) = outcome(raw);
    assert_eq!(
        rcpts,
        vec![(
            "kim@example.org".to_owned(),
            BounceType::Hard,
            Category::UserUnknown
        )]
    );
}

/// Exim's deliver.c layout, one block per failed address: the second
/// one's "mailbox full" is not the first one's reason.
#[test]
fn a_diagnostic_ends_where_the_next_recipients_block_starts() {
    let raw = r#"Return-Path: <>
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: sender@example.com
Subject: Mail delivery failed: returning message to sender

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  kim@example.org
    host mx.example.org [192.0.2.1]
    SMTP error from remote mail server after RCPT TO:<kim@example.org>:
    550 Requested action not taken
  lee@example.org
    host mx.example.org [192.0.2.1]
    SMTP error from remote mail server after RCPT TO:<lee@example.org>:
    552 5.2.2 <lee@example.org>: mailbox full
"#;
    let (_, rcpts) = outcome(raw);
    assert_eq!(rcpts.len(), 2, "{rcpts:?}");
    assert_eq!(rcpts[0].0, "kim@example.org");
    assert_ne!(rcpts[0].2, Category::MailboxFull, "{rcpts:?}");
    assert_eq!(
        rcpts[1],
        (
            "lee@example.org".to_owned(),
            BounceType::Soft,
            Category::MailboxFull
        )
    );
}

/// The same in an RFC 3464 report: a recipient whose own fields explain
/// nothing is not explained by another recipient's text.
#[test]
fn a_dsn_recipient_is_not_explained_by_another_recipients_text() {
    let raw = r#"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: sender@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B2"

--B2
Content-Type: text/plain

<kim@example.org>: host mx.example.org[192.0.2.1] said: 550 Requested
    action not taken (in reply to RCPT TO command)

<lee@example.org>: host mx.example.org[192.0.2.1] said: 552 5.2.2 mailbox
    full (in reply to RCPT TO command)

--B2
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; kim@example.org
Action: failed
Status: 5.0.0
Diagnostic-Code: smtp; 550 Requested action not taken

Final-Recipient: rfc822; lee@example.org
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 mailbox full

--B2--
"#;
    let (kind, rcpts) = outcome(raw);
    assert_eq!(kind, MessageKind::Dsn);
    assert_eq!(rcpts.len(), 2);
    assert_ne!(rcpts[0].2, Category::MailboxFull, "{rcpts:?}");
    assert_eq!(rcpts[1].2, Category::MailboxFull);
}

/// A report that names the command the reply answered in a section of its
/// own, after the reply: a user-unknown answered to DATA is a filter
/// speaking (the recipient was accepted at RCPT TO, RFC 5321 §3.3), one
/// answered to RCPT TO is the mailbox.
#[test]
fn the_command_a_report_names_after_the_reply_decides_who_spoke() {
    let report = |command: &str| {
        format!(
            "From: MAILER-DAEMON@gw.example.net\nTo: sender@example.com\nSubject: Undeliverable mail\n\n\
             Delivery to the following address failed.\nkim@example.org\n\n\n\
             -------server message\n550 unknown user <kim@example.org>\n\n\
             -------SMTP command\n{command}\n\n-------original message\nFrom: sender@example.com\n\
             To: kim@example.org\nSubject: hi\n\nhello\n"
        )
    };
    let (_, rcpts) = outcome(&report("DATA"));
    assert_eq!(rcpts[0].1, BounceType::Soft, "{rcpts:?}");
    assert_eq!(rcpts[0].2, Category::Filtered);
    let (_, rcpts) = outcome(&report("RCPT TO:<kim@example.org>"));
    assert_eq!(
        (rcpts[0].1, rcpts[0].2),
        (BounceType::Hard, Category::UserUnknown),
        "{rcpts:?}"
    );
}

/// OpenSMTPD's bounce (bounce.c): an RFC 3464 part with `Status: 5.0.0`
/// only, and the replies in the text, one `recipient: reply` line each with
/// no blank line between them. Each recipient gets its own reply; a
/// multi-line reply (`552-5.2.2`, RFC 5321 §4.2.1) gives its status.
#[test]
fn each_recipient_of_a_one_line_per_recipient_report_gets_its_own_reply() {
    let raw = r#"From: Mailer Daemon <MAILER-DAEMON@mx.example.net>
To: sender@example.com
Subject: Delivery status notification: failed
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="B3"

--B3
Content-Type: text/plain; charset=us-ascii

    Hi!

    This is the MAILER-DAEMON, please DO NOT REPLY to this email.

    An error has occurred while attempting to deliver a message for
    the following list of recipients:

kim@example.org: 550 5.1.2 Bad destination system address
lee@example.org: 556 5.1.10 Recipient address has null MX
max@example.org: 552-5.2.2 The mailbox is full

    Below is a copy of the original message:

--B3
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; kim@example.org
Action: failed
Status: 5.0.0

Final-Recipient: rfc822; lee@example.org
Action: failed
Status: 5.0.0

Final-Recipient: rfc822; max@example.org
Action: failed
Status: 5.0.0

--B3--
"#;
    let a = analyse(raw);
    let got: Vec<(String, String)> = a
        .recipients
        .iter()
        .map(|r| {
            (
                r.address.to_string(),
                r.status.map(|s| s.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("kim@example.org".to_owned(), "5.1.2".to_owned()),
            ("lee@example.org".to_owned(), "5.1.10".to_owned()),
            ("max@example.org".to_owned(), "5.2.2".to_owned()),
        ]
    );
    let (_, rcpts) = outcome(raw);
    let categories: Vec<Category> = rcpts.iter().map(|r| r.2).collect();
    assert_eq!(
        categories,
        vec![
            Category::InvalidDomain,
            Category::DomainNotAccepting,
            Category::MailboxFull
        ]
    );
}

/// RFC 3464 §2.3.3: `Action: failed` on a transient status is a queue
/// lifetime that ran out (Postfix's bounce after maximal_queue_lifetime).
#[test]
fn a_failed_action_on_a_transient_code_is_an_expiry() {
    let raw = r#"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: sender@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B4"

--B4
Content-Type: text/plain

<kim@example.org>: connect to mx.example.org[192.0.2.1]:25: Connection refused

--B4
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; kim@example.org
Action: failed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.org[192.0.2.1]:25: Connection refused

--B4--
"#;
    let (_, rcpts) = outcome(raw);
    assert_eq!(
        rcpts,
        vec![(
            "kim@example.org".to_owned(),
            BounceType::Soft,
            Category::Expired
        )]
    );
}
