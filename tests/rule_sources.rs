//! Rules keep their `source` (what says the text means what the rule
//! says) through the database: imported, listed and exported with them.

use inmail::rules::{default_rules, parse_rules_toml};
use inmail::store::{Store, StoreSettings};
use sqlx::PgPool;

#[sqlx::test(migrations = "./migrations")]
async fn the_bundled_rules_keep_their_sources_through_import_list_and_export(pool: PgPool) {
    let store = Store::from_pool(pool, StoreSettings::default());
    let bundled = default_rules();
    let summary = store.import_rules(&bundled).await.expect("import");
    assert_eq!(summary.inserted as usize, bundled.len());

    let listed = store.list_rules().await.expect("list");
    assert_eq!(listed.len(), bundled.len());
    for stored in &listed {
        let want = bundled
            .iter()
            .find(|r| r.id == stored.rule.id)
            .expect("a bundled rule");
        assert_eq!(stored.rule.source, want.source, "{}", stored.rule.id);
        assert!(stored.rule.source.is_some(), "{}", stored.rule.id);
    }

    // a re-import with a changed source updates it
    let mut changed = bundled.clone();
    changed[0].source = Some("RFC 3463 §3.3".into());
    store.import_rules(&changed).await.expect("re-import");
    let exported = store.export_rules().await.expect("export");
    let first = exported
        .iter()
        .find(|r| r.id == changed[0].id)
        .expect("exported");
    assert_eq!(first.source.as_deref(), Some("RFC 3463 §3.3"));

    // the exported rules file reads back with its sources
    #[derive(serde::Serialize)]
    struct File<'a> {
        rule: &'a [inmail::rules::Rule],
    }
    let toml = toml::to_string(&File { rule: &exported }).expect("toml");
    let back = parse_rules_toml(&toml, "export").expect("parses");
    assert_eq!(back, exported);
}

#[sqlx::test(migrations = "./migrations")]
async fn an_empty_source_is_refused(pool: PgPool) {
    let store = Store::from_pool(pool, StoreSettings::default());
    let mut rule = default_rules().remove(0);
    rule.source = Some("  ".into());
    assert!(store.insert_rule(&rule).await.is_err());
    rule.source = None;
    store
        .insert_rule(&rule)
        .await
        .expect("a rule without a source is kept");
}
