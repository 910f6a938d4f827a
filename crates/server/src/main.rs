//! The `warmpool` binary: see `warmpool --help`.

fn main() {
    match warmpool_server::cli::main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!(
                "warmpool: {}",
                warmpool_server::engine::error_chain(e.as_ref())
            );
            std::process::exit(2);
        }
    }
}
