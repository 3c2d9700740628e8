//! `fedgate-federation`: the federation node. Everything is in [`fedgate_node::cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    fedgate_node::cli::main()
}
