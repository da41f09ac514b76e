//! PLACEHOLDER: being written (owner: host engineer). Replace this whole file.

#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

pub fn run(_args: DemoArgs, _data_dir: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not implemented yet")
}
