//! PLACEHOLDER: being written (owner: runtime engineer). Replace this whole file.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum ArticleCmd {}

#[derive(clap::Args, Debug)]
pub struct PublishArgs {}

pub fn run(cmd: ArticleCmd, _data_dir: &Path) -> anyhow::Result<ExitCode> {
    match cmd {}
}

pub fn publish(_args: PublishArgs, _data_dir: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
