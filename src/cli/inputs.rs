//! What the commands read: message files, folders (plain or maildir, in sorted
//! order), mbox files (`path#n`), or `-` for standard input.

use std::io::Read;
use std::path::{Path, PathBuf};

/// One message to analyse.
pub struct Input {
    /// File path; `path#n` for the n-th message of an mbox; `-` for stdin.
    pub source: String,
    pub data: Vec<u8>,
}

/// A path that could not be read, reported without stopping the others.
#[derive(Debug)]
pub struct InputError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

/// Expands the command-line paths into message files, in a stable order.
pub fn expand(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<InputError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            files.push(p.clone());
            continue;
        }
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => walk(p, &mut files, &mut errors),
            Ok(_) => files.push(p.clone()),
            Err(error) => errors.push(InputError {
                path: p.clone(),
                error,
            }),
        }
    }
    (files, errors)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<InputError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(error) => {
            errors.push(InputError {
                path: dir.to_path_buf(),
                error,
            });
            return;
        }
    };
    let mut paths: Vec<(PathBuf, bool)> = Vec::new();
    for entry in entries {
        match entry {
            // the directory entry's own type needs no stat of each file; a
            // symbolic link is followed, as the path itself would be
            Ok(e) => {
                let p = e.path();
                let is_dir = match e.file_type() {
                    Ok(t) if !t.is_symlink() => t.is_dir(),
                    _ => p.is_dir(),
                };
                paths.push((p, is_dir));
            }
            Err(error) => errors.push(InputError {
                path: dir.to_path_buf(),
                error,
            }),
        }
    }
    // every entry has this parent: its name orders it as its whole path
    // would, without comparing the parent's components each time
    paths.sort_unstable_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    for (p, is_dir) in paths {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // a maildir's tmp/ holds messages still being written; dotfiles are not mail
        if name.starts_with('.') || (name == "tmp" && dir.join("cur").is_dir()) {
            continue;
        }
        if is_dir {
            walk(&p, files, errors);
        } else {
            files.push(p);
        }
    }
}

/// Reads one expanded path into its messages (several for an mbox).
pub fn read(path: &Path) -> Result<Vec<Input>, InputError> {
    let res = if path.as_os_str() == "-" {
        let mut data = Vec::new();
        std::io::stdin().lock().read_to_end(&mut data).map(|_| data)
    } else {
        // sized from the file's length: one allocation, not a doubling series
        std::fs::read(path)
    };
    let data = res.map_err(|error| InputError {
        path: path.to_path_buf(),
        error,
    })?;
    let source = path.display().to_string();
    Ok(split_mbox(&source, data))
}

/// An mbox is a file of two or more messages, each starting with a `From `
/// line. A `.eml` file is one message by definition, even when its body
/// quotes an unescaped `From ` line (bounces often do).
fn split_mbox(source: &str, data: Vec<u8>) -> Vec<Input> {
    let single = std::path::Path::new(source)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("eml") || e.eq_ignore_ascii_case("msg"));
    if single || !data.starts_with(b"From ") {
        return vec![Input {
            source: source.to_string(),
            data,
        }];
    }
    // an mbox written on Windows or old Macs: separators follow CRLF or CR lines
    let data = if memchr::memchr(b'\n', &data).is_none() {
        data.iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect()
    } else {
        data
    };
    let mut starts = vec![0usize];
    // mbox puts a blank line before each separator; a bare "From " line
    // without one belongs to the message before it
    starts.extend(
        memchr::memmem::find_iter(&data, b"\nFrom ")
            .map(|i| i + 1)
            .filter(|&i| data[..i - 1].ends_with(b"\n") || data[..i - 1].ends_with(b"\n\r"))
            .filter(|&i| is_separator(&data[i..])),
    );
    if starts.len() < 2 {
        return vec![Input {
            source: source.to_string(),
            data,
        }];
    }
    let mut out = Vec::with_capacity(starts.len());
    for (n, w) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(data.len());
        let mut msg = data[*w..end].to_vec();
        unescape_from(&mut msg);
        out.push(Input {
            source: format!("{source}#{}", n + 1),
            data: msg,
        });
    }
    out
}

/// `From sender Thu Jul  2 12:05:05 2020`: a bare "From " in a body is not one.
fn is_separator(line_start: &[u8]) -> bool {
    static SEP: std::sync::LazyLock<regex::bytes::Regex> = std::sync::LazyLock::new(|| {
        regex::bytes::Regex::new(r"^From \S+\s+[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d")
            .expect("mbox separator regex")
    });
    let end = memchr::memchr(b'\n', line_start).unwrap_or(line_start.len());
    let line = &line_start[..end];
    SEP.is_match(line.strip_suffix(b"\r").unwrap_or(line))
}

/// mboxrd quoting: `>From ` at a line start stands for `From `.
fn unescape_from(msg: &mut Vec<u8>) {
    if memchr::memmem::find(msg, b"\n>From ").is_none() {
        return;
    }
    let mut out = Vec::with_capacity(msg.len());
    let mut at_line_start = true;
    let mut i = 0;
    while i < msg.len() {
        if at_line_start && msg[i..].starts_with(b">From ") {
            i += 1;
        }
        let b = msg[i];
        out.push(b);
        at_line_start = b == b'\n';
        i += 1;
    }
    *msg = out;
}
