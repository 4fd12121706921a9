//! `kubectl mailcred`: seal a mail password into a MailCredential, re-seal and re-encrypt
//! existing ones; generate local keys.
//! The password is read from a TTY prompt or stdin, never from argv or the environment.

mod authorize;
mod cli;
mod kubeconfig;
mod merge;
mod password;
mod reencrypt;
mod request;
mod reseal;
mod seal;
mod seal_oauth;
mod validate;
mod verify;
mod verify_login;

use std::process::ExitCode;

use clap::Parser;

/// Every heap block is zeroed when freed. The password's own buffers are zeroized by their
/// types; this covers the copies that dependencies make and free without zeroizing (lettre's
/// `Credentials` and AUTH line, base64 encodings, TLS plaintext buffers). Checked by
/// e2e/hygiene/check-memory.py; the cost is measured in bench/smtp.
#[global_allocator]
static ALLOCATOR: secmem_alloc::zeroizing_alloc::ZeroizeAlloc<std::alloc::System> =
    secmem_alloc::zeroizing_alloc::ZeroizeAlloc::new(std::alloc::System);

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Seal(args) => seal::run(*args).await,
        cli::Command::Reencrypt(args) => reencrypt::run(*args).await,
        cli::Command::Request(args) => request::run(*args).await,
        cli::Command::Authorize(args) => authorize::run(*args).await,
        cli::Command::Keygen(args) => seal::keygen(&args),
        cli::Command::Verify(args) => verify::run(&args).await,
        cli::Command::Version => {
            print_version();
            Ok(())
        }
        cli::Command::Completion(args) => {
            let mut command = <cli::Cli as clap::CommandFactory>::command();
            let name = command.get_name().to_string();
            clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Build facts that need no git: which release, and which envelope format it writes and reads.
fn print_version() {
    println!("kubectl-mailcred {}", env!("CARGO_PKG_VERSION"));
    println!(
        "envelope format: {}",
        mailcred_core::envelope::FORMAT_VERSION
    );
    println!(
        "target: {}-{}",
        std::env::consts::ARCH,
        std::env::consts::OS
    );
}
