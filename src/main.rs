//! The `faultline` binary: parses the command line and runs a command.

fn main() {}
