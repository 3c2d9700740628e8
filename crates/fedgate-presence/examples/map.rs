//! Availability mapping checker.
//!
//! `cargo run -q -p fedgate-presence --example map -- --from lync --to xmpp-local "Do Not Disturb"`
//! prints `Away "Busy"`. Prints `unmapped` when no table covers the pair.
//! Exits 0 on an answer, 2 on a bad command line.

fn main() {
    match fedgate_presence::checker::run(std::env::args().skip(1)) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("map: {e}\n{}", fedgate_presence::checker::USAGE);
            std::process::exit(2);
        }
    }
}
