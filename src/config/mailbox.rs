//! `[[mailbox]]` tables, parsed once at load: `kind` picks the variant of
//! [`Mailbox`], each variant takes only its own keys (a key of another kind
//! is an error naming it), and the values a key allows (`tls`, `after`) are
//! enums. The TOML keys are the flat ones operators write:
//!
//! ```toml
//! [[mailbox]]
//! name = "bounces"
//! kind = "imap"                 # maildir | imap | pop3
//! host = "mail.example.com"
//! tls = "implicit"              # implicit | starttls | none (loopback only)
//! username = "bounces"
//! password_env = "INMAIL_IMAP_PASSWORD"
//! after = "move"                # imap: seen | delete | move; maildir: the same; pop3: delete
//! move_to = "Processed"
//! ```
//!
//! What needs the machine (a file that exists, an environment variable that
//! is set, a CA file that loads) is checked later, by
//! [`Settings::validate`](super::Settings::validate) and when the source is
//! built; what the text alone decides is decided here.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One `[[mailbox]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Mailbox {
    Maildir(MaildirMailbox),
    Imap(ImapMailbox),
    Pop3(Pop3Mailbox),
}

impl Mailbox {
    /// A maildir mailbox with every optional key unset (the defaults apply).
    pub fn maildir(name: &str, path: &Path) -> Self {
        Self::Maildir(MaildirMailbox::new(name, path))
    }

    /// `name`: stable, part of the intake key and of the lease.
    pub fn name(&self) -> &str {
        match self {
            Self::Maildir(m) => &m.name,
            Self::Imap(m) => &m.name,
            Self::Pop3(m) => &m.name,
        }
    }
}

/// A parse error naming the mailbox and the key, as the other mailbox
/// errors do: `mailbox NAME: KEY: what is wrong`.
fn key_error(mailbox: &str, key: &str, message: impl fmt::Display) -> String {
    format!("mailbox {mailbox}: {key}: {message}")
}

/// How the connection to the mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlsMode {
    /// TLS from the first byte (imaps/993, pop3s/995).
    #[default]
    Implicit,
    /// Plain connection upgraded with STARTTLS (IMAP) or STLS (POP3) before login.
    StartTls,
    /// No TLS at all; only sensible on loopback or inside a trusted network.
    None,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::StartTls => "starttls",
            TlsMode::None => "none",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "implicit" => Ok(TlsMode::Implicit),
            "starttls" => Ok(TlsMode::StartTls),
            "none" => Ok(TlsMode::None),
            other => Err(format!(
                "{other:?}: expected \"implicit\", \"starttls\" or \"none\""
            )),
        }
    }
}

/// What a maildir source does with a file once it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaildirAfter {
    /// To `cur/` with the `S` flag.
    Seen,
    Delete,
    /// To the `cur/` of this maildir folder: an absolute path, or a
    /// Maildir++ subfolder of the mailbox (`Processed` → `ROOT/.Processed`).
    Move {
        to: String,
    },
}

/// What an IMAP source does on the server once a message is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImapAfter {
    /// Nothing: the checkpoint records what was taken.
    Seen,
    /// `\Deleted` + expunge.
    Delete,
    /// `UID MOVE` (or COPY + delete) to this folder, created if missing.
    Move { to: String },
}

/// What a POP3 source does once a message is committed. POP3 has no
/// folders and no flags: deleting (final at QUIT) is all it can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pop3After {
    #[default]
    Delete,
}

/// `[[mailbox]] kind = "maildir"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "MaildirKeys", into = "MaildirKeys")]
pub struct MaildirMailbox {
    pub name: String,
    /// The maildir root (with `cur/`, `new/`, `tmp/`).
    pub path: PathBuf,
    pub after: MaildirAfter,
    pub poll_interval_secs: Option<u64>,
}

/// Where and as whom an IMAP or POP3 source logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub host: String,
    /// The `port` key, else the kind's and `tls`'s default (993/143, 995/110).
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    /// Name of the environment variable holding the password (preferred).
    pub password_env: Option<String>,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// Extra CA (PEM) to trust for this server.
    pub ca_file: Option<PathBuf>,
}

/// `[[mailbox]] kind = "imap"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "ImapKeys", into = "ImapKeys")]
pub struct ImapMailbox {
    pub name: String,
    pub server: ServerSettings,
    /// The folder read (default `INBOX`).
    pub folder: String,
    pub after: ImapAfter,
    pub poll_interval_secs: Option<u64>,
}

/// `[[mailbox]] kind = "pop3"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "Pop3Keys", into = "Pop3Keys")]
pub struct Pop3Mailbox {
    pub name: String,
    pub server: ServerSettings,
    pub after: Pop3After,
    pub poll_interval_secs: Option<u64>,
}

impl MaildirMailbox {
    /// Every optional key unset (the defaults apply).
    pub fn new(name: &str, path: &Path) -> Self {
        Self {
            name: name.into(),
            path: path.to_path_buf(),
            after: MaildirAfter::Seen,
            poll_interval_secs: None,
        }
    }
}

// The tables as written; each variant converts from its own.

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct MaildirKeys {
    name: String,
    path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    move_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    poll_interval_secs: Option<u64>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ImapKeys {
    name: String,
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<String>,
    username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    folder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    move_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    poll_interval_secs: Option<u64>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Pop3Keys {
    name: String,
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<String>,
    username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    poll_interval_secs: Option<u64>,
}

/// `after` and `move_to` of a maildir or an IMAP folder: `move` needs
/// `move_to`.
fn after_move(
    name: &str,
    after: Option<&str>,
    move_to: Option<String>,
) -> Result<Option<AfterWord>, String> {
    let word = match after {
        None => None,
        Some("seen") => Some(AfterWord::Seen),
        Some("delete") => Some(AfterWord::Delete),
        Some("move") => match move_to {
            Some(to) => return Ok(Some(AfterWord::Move(to))),
            None => return Err(key_error(name, "move_to", "required when after = \"move\"")),
        },
        Some(other) => {
            return Err(key_error(
                name,
                "after",
                format!("{other:?}: expected \"seen\", \"delete\" or \"move\""),
            ))
        }
    };
    // A `move_to` left over from an earlier `after = "move"` has always
    // been accepted and ignored; configurations in use keep parsing.
    let _ = move_to;
    Ok(word)
}

enum AfterWord {
    Seen,
    Delete,
    Move(String),
}

impl TryFrom<MaildirKeys> for MaildirMailbox {
    type Error = String;

    fn try_from(k: MaildirKeys) -> Result<Self, String> {
        let after = match after_move(&k.name, k.after.as_deref(), k.move_to)? {
            None | Some(AfterWord::Seen) => MaildirAfter::Seen,
            Some(AfterWord::Delete) => MaildirAfter::Delete,
            Some(AfterWord::Move(to)) => MaildirAfter::Move { to },
        };
        Ok(Self {
            name: k.name,
            path: k.path,
            after,
            poll_interval_secs: k.poll_interval_secs,
        })
    }
}

impl From<MaildirMailbox> for MaildirKeys {
    fn from(m: MaildirMailbox) -> Self {
        let (after, move_to) = match m.after {
            MaildirAfter::Seen => ("seen", None),
            MaildirAfter::Delete => ("delete", None),
            MaildirAfter::Move { to } => ("move", Some(to)),
        };
        Self {
            name: m.name,
            path: m.path,
            after: Some(after.into()),
            move_to,
            poll_interval_secs: m.poll_interval_secs,
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// IMAP folder names are sent as quoted strings (7-bit, no line breaks).
fn check_folder_name(folder: &str) -> Result<(), String> {
    if folder.is_empty()
        || !folder
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(format!(
            "{folder:?}: must be non-empty printable ASCII without quotes or backslashes"
        ));
    }
    Ok(())
}

/// The keys IMAP and POP3 share, checked: what the text alone can tell.
#[allow(clippy::too_many_arguments)]
fn server(
    name: &str,
    kind: &str,
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    username: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
) -> Result<ServerSettings, String> {
    let err = |key: &str, message: String| key_error(name, key, message);
    let host = host.trim().to_owned();
    if host.is_empty() {
        return Err(err("host", "required for IMAP and POP3".into()));
    }
    if host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(err("host", format!("{host:?} is not a host name")));
    }
    let tls = match tls.as_deref() {
        None => TlsMode::Implicit,
        Some(t) => t.parse().map_err(|e| err("tls", e))?,
    };
    if tls == TlsMode::None && !is_loopback(&host) {
        return Err(err(
            "tls",
            format!(
                "\"none\" would send the password in clear text; it is allowed only for a \
                 loopback host (localhost, 127.0.0.1, ::1), not {host:?}: use \"implicit\" \
                 or \"starttls\""
            ),
        ));
    }
    let port = match port {
        Some(0) => return Err(err("port", "0 is not a port".into())),
        Some(p) => p,
        None => match (kind, tls) {
            ("imap", TlsMode::Implicit) => 993,
            ("imap", _) => 143,
            (_, TlsMode::Implicit) => 995,
            _ => 110,
        },
    };
    if username.trim().is_empty() {
        return Err(err("username", "required for IMAP and POP3".into()));
    }
    if password_env.is_none() && password_file.is_none() {
        return Err(err(
            "password_env",
            "set password_env or password_file".into(),
        ));
    }
    Ok(ServerSettings {
        host,
        port,
        tls,
        username,
        password_env,
        password_file,
        ca_file,
    })
}

impl TryFrom<ImapKeys> for ImapMailbox {
    type Error = String;

    fn try_from(k: ImapKeys) -> Result<Self, String> {
        let server = server(
            &k.name,
            "imap",
            k.host,
            k.port,
            k.tls,
            k.username,
            k.password_env,
            k.password_file,
            k.ca_file,
        )?;
        let folder = k.folder.unwrap_or_else(|| "INBOX".to_owned());
        check_folder_name(&folder).map_err(|m| key_error(&k.name, "folder", m))?;
        let after = match after_move(&k.name, k.after.as_deref(), k.move_to)? {
            None | Some(AfterWord::Seen) => ImapAfter::Seen,
            Some(AfterWord::Delete) => ImapAfter::Delete,
            Some(AfterWord::Move(to)) => {
                check_folder_name(&to).map_err(|m| key_error(&k.name, "move_to", m))?;
                if to == folder {
                    return Err(key_error(
                        &k.name,
                        "move_to",
                        format!("{to:?} is the folder being read"),
                    ));
                }
                ImapAfter::Move { to }
            }
        };
        Ok(Self {
            name: k.name,
            server,
            folder,
            after,
            poll_interval_secs: k.poll_interval_secs,
        })
    }
}

impl From<ImapMailbox> for ImapKeys {
    fn from(m: ImapMailbox) -> Self {
        let (after, move_to) = match m.after {
            ImapAfter::Seen => ("seen", None),
            ImapAfter::Delete => ("delete", None),
            ImapAfter::Move { to } => ("move", Some(to)),
        };
        let s = m.server;
        Self {
            name: m.name,
            host: s.host,
            port: Some(s.port),
            tls: Some(s.tls.to_string()),
            username: s.username,
            password_env: s.password_env,
            password_file: s.password_file,
            folder: Some(m.folder),
            ca_file: s.ca_file,
            after: Some(after.into()),
            move_to,
            poll_interval_secs: m.poll_interval_secs,
        }
    }
}

impl TryFrom<Pop3Keys> for Pop3Mailbox {
    type Error = String;

    fn try_from(k: Pop3Keys) -> Result<Self, String> {
        let server = server(
            &k.name,
            "pop3",
            k.host,
            k.port,
            k.tls,
            k.username,
            k.password_env,
            k.password_file,
            k.ca_file,
        )?;
        let after = match k.after.as_deref() {
            None | Some("delete") => Pop3After::Delete,
            Some(other) => {
                return Err(key_error(
                    &k.name,
                    "after",
                    format!(
                        "{other:?} is not possible with POP3 (no folders, no flags): use \"delete\""
                    ),
                ))
            }
        };
        Ok(Self {
            name: k.name,
            server,
            after,
            poll_interval_secs: k.poll_interval_secs,
        })
    }
}

impl From<Pop3Mailbox> for Pop3Keys {
    fn from(m: Pop3Mailbox) -> Self {
        let s = m.server;
        Self {
            name: m.name,
            host: s.host,
            port: Some(s.port),
            tls: Some(s.tls.to_string()),
            username: s.username,
            password_env: s.password_env,
            password_file: s.password_file,
            ca_file: s.ca_file,
            after: Some("delete".into()),
            poll_interval_secs: m.poll_interval_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<Mailbox, String> {
        toml::from_str::<Mailbox>(toml).map_err(|e| e.to_string())
    }

    const IMAP: &str = "name = \"b\"\nkind = \"imap\"\nhost = \"mail.example.com\"\n\
                        username = \"u\"\npassword_env = \"P\"\n";

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("mail.example.com"));
        assert!(!is_loopback("10.0.0.1"));
    }

    #[test]
    fn folder_names() {
        assert!(check_folder_name("INBOX").is_ok());
        assert!(check_folder_name("Processed/Bounces").is_ok());
        assert!(check_folder_name("").is_err());
        assert!(check_folder_name("a\"b").is_err());
        assert!(check_folder_name("pä").is_err());
    }

    #[test]
    fn tls_mode_round_trips() {
        for mode in [TlsMode::Implicit, TlsMode::StartTls, TlsMode::None] {
            assert_eq!(mode.to_string().parse::<TlsMode>(), Ok(mode));
        }
        assert!("tls".parse::<TlsMode>().is_err());
    }

    #[test]
    fn an_imap_table_gets_its_defaults() {
        let Mailbox::Imap(m) = parse(IMAP).expect("valid") else {
            panic!("not imap")
        };
        assert_eq!(m.server.tls, TlsMode::Implicit);
        assert_eq!(m.server.port, 993);
        assert_eq!(m.folder, "INBOX");
        assert_eq!(m.after, ImapAfter::Seen);
        let Mailbox::Pop3(p) = parse(
            &IMAP
                .replace("imap", "pop3")
                .replace("host", "tls = \"starttls\"\nhost"),
        )
        .expect("valid") else {
            panic!("not pop3")
        };
        assert_eq!((p.server.port, p.after), (110, Pop3After::Delete));
    }

    #[test]
    fn a_key_of_another_kind_is_an_error_naming_the_key() {
        let e = parse(&format!(
            "{}folder = \"INBOX\"\n",
            IMAP.replace("imap", "pop3")
        ))
        .expect_err("pop3 has no folder");
        assert!(e.contains("unknown field `folder`"), "{e}");
        let e = parse("name = \"m\"\nkind = \"maildir\"\npath = \"/m\"\nhost = \"h\"\n")
            .expect_err("a maildir has no host");
        assert!(e.contains("unknown field `host`"), "{e}");
    }

    #[test]
    fn bad_values_name_the_mailbox_and_the_key() {
        for (extra, key) in [
            ("tls = \"tls\"\n", "tls"),
            ("tls = \"none\"\n", "tls"),
            ("after = \"move\"\n", "move_to"),
            ("after = \"keep\"\n", "after"),
            ("after = \"move\"\nmove_to = \"INBOX\"\n", "move_to"),
            ("folder = \"a\\\"b\"\n", "folder"),
            ("port = 0\n", "port"),
        ] {
            let e = parse(&format!("{IMAP}{extra}")).expect_err(extra);
            assert!(e.contains(&format!("mailbox b: {key}:")), "{extra}: {e}");
        }
        let e = parse(&format!(
            "{}after = \"move\"\n",
            IMAP.replace("imap", "pop3")
        ))
        .expect_err("pop3 cannot move");
        assert!(e.contains("mailbox b: after:"), "{e}");
        let e = parse(&IMAP.replace("mail.example.com", " ")).expect_err("blank host");
        assert!(e.contains("mailbox b: host:"), "{e}");
    }

    #[test]
    fn a_mailbox_serialises_to_the_keys_it_was_read_from() {
        let m = parse(&format!("{IMAP}after = \"move\"\nmove_to = \"Done\"\n")).expect("valid");
        let text = toml::to_string(&m).expect("serialise");
        assert_eq!(parse(&text), Ok(m), "{text}");
        let m = Mailbox::maildir("m", Path::new("/var/mail/m"));
        let text = toml::to_string(&m).expect("serialise");
        assert_eq!(parse(&text), Ok(m), "{text}");
    }
}
