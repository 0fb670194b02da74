//! Prints the full analysis of each file given, for debugging the parser.
fn main() {
    let analyzer = inmail::analysis::Analyzer::default();
    for p in std::env::args().skip(1) {
        match std::fs::read(&p) {
            Ok(data) => println!("{p}: {:#?}", analyzer.analyse(&data)),
            Err(e) => eprintln!("{p}: {e}"),
        }
    }
}
