//! `xmppcheck FILE...`: feeds each file through the stream reader as the receiving side
//! of an s2s stream, in 7-byte chunks, and prints one line per event (see
//! `fedgate_xmpp::check::check_stream`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: xmppcheck FILE...");
        return ExitCode::from(2);
    }
    for f in files {
        match std::fs::read(&f) {
            Ok(bytes) => {
                for line in fedgate_xmpp::check::check_stream(&bytes, 7) {
                    println!("{line}");
                }
            }
            Err(e) => {
                eprintln!("xmppcheck: {f}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
