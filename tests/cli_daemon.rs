//! The operator commands of the daemon, through the real binary.

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_inmail");

#[test]
fn check_config_masks_secrets_and_reports_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("Maildir");
    common::make_maildir(&md);
    let cfg = dir.path().join("ok.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"postgres://inmail:hunter2@db.example/inmail\"\n\
             [correlation]\nverp_secret = \"verp-key-123\"\n\
             [daemon]\nworkers = 3\n\
             [[mailbox]]\nname = \"b\"\nkind = \"maildir\"\npath = \"{}\"\n",
            md.display()
        ),
    )
    .expect("write");
    for json in [false, true] {
        let mut c = Command::new(BIN);
        c.arg("check-config").arg("--config").arg(&cfg);
        if json {
            c.arg("--json");
        }
        let out = c.env_remove("INMAIL__DATABASE__URL").output().expect("run");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("hunter2") && !text.contains("verp-key-123"),
            "{text}"
        );
        assert!(text.contains("inmail:****@db.example"), "{text}");
        assert!(text.contains("workers") && text.contains('3'), "{text}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[daemon]\nworkers = 0\n[[mailbox]]\nname = \"x\"\nkind = \"maildir\"\npath = \"/nonexistent/md\"\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("daemon.workers") && err.contains("path"),
        "{err}"
    );
}
