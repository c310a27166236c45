//! The `ferrolb` binary.

fn main() -> std::process::ExitCode {
    ferrolb::cli::main()
}
