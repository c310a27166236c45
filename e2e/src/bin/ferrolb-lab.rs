//! `ferrolb-lab up [--processes]|down|status|kubectl ARGS… [--dir DIR]`: the local lab
//! (see `ferrolb_e2e::lab`; `--processes` runs the nodes as processes instead of kubelets
//! and pods). Run through `hack/lab.sh`, which builds what it needs first.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = PathBuf::from("/run/ferrolb-lab");
    if let Some(at) = args.iter().position(|a| a == "--dir")
        && let Some(value) = args.get(at + 1)
    {
        dir = PathBuf::from(value);
        args.drain(at..=at + 1);
    }
    let outcome = match args.first().map(String::as_str) {
        Some("up") => {
            let mode = if args.iter().any(|a| a == "--processes") {
                ferrolb_e2e::lab::Mode::Processes
            } else {
                ferrolb_e2e::lab::Mode::Pods
            };
            ferrolb_e2e::lab::up(&dir, mode).map(|text| print!("{text}"))
        }
        Some("down") => ferrolb_e2e::lab::down(&dir).map(|()| println!("lab down")),
        Some("status") => ferrolb_e2e::lab::status(&dir).map(|text| print!("{text}")),
        Some("kubectl") => {
            let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            ferrolb_e2e::lab::kubectl(&dir)
                .run(&rest, None)
                .map(|text| print!("{text}"))
        }
        _ => {
            eprintln!(
                "usage: ferrolb-lab up [--processes]|down|status|kubectl ARGS... [--dir DIR]"
            );
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
