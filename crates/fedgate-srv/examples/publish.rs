//! Prints the DNS records a deployment must publish, as a zone-file fragment.
//!
//! `cargo run -q -p fedgate-srv --example publish -- CONFIG.toml`

use std::process::ExitCode;

use fedgate_srv::Deployment;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        eprintln!("usage: publish CONFIG.toml");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match Deployment::from_toml_str(&text) {
        Ok(d) => {
            print!("{}", d.zone_fragment());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
