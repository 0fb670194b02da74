use clap::Parser;

fn main() {
    let cli = inmail::cli::Cli::parse();
    match inmail::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("inmail: {e:#}");
            std::process::exit(2);
        }
    }
}
