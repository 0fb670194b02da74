//! The documentation states what the code does: the category table in
//! README.md is the one `inmail categories --markdown` prints, and every rule
//! of the bundled rules file compiles and names a known category.

#[test]
fn readme_category_table_matches_the_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable");
    let table = inmail::cli::qualify::categories_table(true);
    assert!(
        readme.contains(&table),
        "README.md's category table is stale: paste `inmail categories --markdown`:\n{table}"
    );
}

#[test]
fn bundled_rules_compile() {
    let rules = inmail::rules::default_rules();
    assert!(
        rules.len() > 20,
        "the default rule set is unexpectedly small"
    );
    inmail::rules::RuleSet::compile(rules).expect("config/rules.toml compiles");
}
