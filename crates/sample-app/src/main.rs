//! The `warmpool-sample-app` binary: serves the sample app configured from the
//! environment until SIGTERM or SIGINT.

use std::process::ExitCode;

use warmpool_sample_app::{run, Config};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &dyn std::error::Error) -> ExitCode {
    eprintln!("warmpool-sample-app: {err}");
    ExitCode::FAILURE
}
