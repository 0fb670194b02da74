//! The messages named on a command line: files, folders (walked recursively
//! in name order; a maildir yields `cur/` then `new/`), mbox files (split on
//! `From ` lines) and `-` for standard input (one message or an mbox).

use anyhow::Context;
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One raw message and where it came from (`path`, or `path#N` in an mbox).
#[derive(Debug)]
pub struct Message {
    pub source: String,
    pub raw: Vec<u8>,
}

enum Input {
    File(PathBuf),
    Stdin,
}

/// Yields every message under `paths`, in order. Folders are listed when
/// this is created; files are read as they are reached.
pub struct Messages {
    inputs: VecDeque<Input>,
    pending: VecDeque<Message>,
}

pub fn messages(paths: &[PathBuf]) -> anyhow::Result<Messages> {
    let mut inputs = VecDeque::new();
    for p in paths {
        if p.as_os_str() == "-" {
            inputs.push_back(Input::Stdin);
        } else if p.is_dir() {
            let mut files = Vec::new();
            walk(p, &mut files).with_context(|| format!("listing {}", p.display()))?;
            inputs.extend(files.into_iter().map(Input::File));
        } else if p.is_file() {
            inputs.push_back(Input::File(p.clone()));
        } else {
            anyhow::bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(Messages {
        inputs,
        pending: VecDeque::new(),
    })
}

impl Iterator for Messages {
    type Item = anyhow::Result<Message>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(Ok(m));
            }
            let (name, raw) = match self.inputs.pop_front()? {
                Input::File(p) => {
                    let raw = std::fs::read(&p).with_context(|| format!("reading {}", p.display()));
                    (p.display().to_string(), raw)
                }
                Input::Stdin => {
                    let mut buf = Vec::new();
                    let raw = std::io::stdin()
                        .read_to_end(&mut buf)
                        .map(|_| buf)
                        .context("reading standard input");
                    ("-".to_owned(), raw)
                }
            };
            match raw {
                Ok(raw) => self.pending.extend(split_input(&name, raw)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() && dir.join("new").is_dir()
}

/// Appends the message files under `dir`, sorted by name at each level.
/// Hidden entries and a maildir's `tmp/` (messages being written) are skipped.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if is_maildir(dir) {
        for sub in ["cur", "new"] {
            out.extend(
                sorted_entries(&dir.join(sub))?
                    .into_iter()
                    .filter(|p| p.is_file()),
            );
        }
        return Ok(());
    }
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if !e.file_name().to_string_lossy().starts_with('.') {
            entries.push(e.path());
        }
    }
    entries.sort();
    Ok(entries)
}

/// One message, or several when the input is an mbox.
fn split_input(name: &str, raw: Vec<u8>) -> Vec<Message> {
    if !raw.starts_with(b"From ") {
        return vec![Message {
            source: name.to_owned(),
            raw,
        }];
    }
    split_mbox(&raw)
        .into_iter()
        .enumerate()
        .map(|(i, raw)| Message {
            source: format!("{name}#{}", i + 1),
            raw,
        })
        .collect()
}

/// Splits an mbox on its `From ` separator lines and undoes the `>From `
/// quoting of body lines (mboxrd: one `>` is removed).
pub fn split_mbox(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b"From ") {
            out.extend(current.take());
            current = Some(Vec::new());
            continue;
        }
        let Some(msg) = current.as_mut() else {
            continue;
        };
        let quoted = line
            .iter()
            .position(|b| *b != b'>')
            .is_some_and(|n| n > 0 && line[n..].starts_with(b"From "));
        msg.extend_from_slice(if quoted { &line[1..] } else { line });
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_is_split_and_unquoted() {
        let mbox = b"From a@b Mon Jan 1 00:00:00 2024\nSubject: one\n\n>From here\n\nFrom c@d Tue Jan 2 00:00:00 2024\nSubject: two\n\nbody\n";
        let parts = split_mbox(mbox);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], b"Subject: one\n\nFrom here\n\n");
        assert_eq!(parts[1], b"Subject: two\n\nbody\n");
    }

    #[test]
    fn folders_are_walked_in_order_and_maildirs_read_cur_then_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let md = dir.path().join("b-maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).expect("mkdir");
        }
        std::fs::write(md.join("new/1"), "new").expect("write");
        std::fs::write(md.join("cur/2"), "cur").expect("write");
        std::fs::write(md.join("tmp/3"), "tmp").expect("write");
        std::fs::write(dir.path().join("a.eml"), "a").expect("write");
        std::fs::write(dir.path().join(".hidden"), "h").expect("write");
        let got: Vec<String> = messages(&[dir.path().to_path_buf()])
            .expect("list")
            .map(|m| String::from_utf8(m.expect("read").raw).expect("utf8"))
            .collect();
        assert_eq!(got, ["a", "cur", "new"]);
    }
}
