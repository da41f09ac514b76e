//! `bitwrk-host identity show|sign|verify`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use crate::data_dir::load_or_create_key;

#[derive(Subcommand, Debug)]
pub enum IdentityCmd {
    /// Print the account address (creates the key on first use).
    Show,
    /// Sign MESSAGE as a Bitcoin signed message; prints the base64 signature.
    Sign {
        /// The exact text to sign.
        message: String,
    },
    /// Verify a Bitcoin signed message; exit 0 and print `valid`, or exit 1 and say why.
    Verify {
        /// The signer's address (Base58, as `identity show` prints it).
        address: String,
        /// The base64 signature (as `identity sign` prints it).
        signature: String,
        /// The exact text that was signed.
        message: String,
    },
}

pub fn run(cmd: IdentityCmd, data_dir: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        IdentityCmd::Show => {
            println!("{}", load_or_create_key(data_dir)?.address());
        }
        IdentityCmd::Sign { message } => {
            println!("{}", load_or_create_key(data_dir)?.sign_message(&message));
        }
        IdentityCmd::Verify { address, signature, message } => {
            match bitwrk_protocol::identity::verify_message(&address, &signature, &message) {
                Ok(()) => println!("valid"),
                Err(e) => {
                    println!("invalid: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
