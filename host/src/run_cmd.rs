//! PLACEHOLDER: being written (owner: host engineer). Replace this whole file.

#[derive(clap::Args, Debug)]
pub struct RunArgs {}

pub fn run(_args: RunArgs, _data_dir: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not implemented yet")
}
