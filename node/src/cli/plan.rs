//! `ringhub plan --input FILE.json`: the planner's what-if tool. Operators ask "what
//! happens if this module dies, or this EV arrives?" and read back the islands, owners
//! and grants the hub's leader would commit. The file format is in
//! `ringhub_cluster::planner::what_if`; a bad file is refused with the JSON path of the
//! field at fault.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ringhub_cluster::planner::{plan, what_if};

/// `ringhub plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// The ring to plan, as JSON (`-` for standard input).
    #[arg(long)]
    pub input: PathBuf,
}

/// The plan for the file at `input`, as pretty JSON.
pub fn run(input: &Path) -> anyhow::Result<String> {
    let text = if input == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?
    };
    let ring = what_if::parse(&text).with_context(|| format!("{}", input.display()))?;
    let answer = what_if::answer(&plan(&ring));
    Ok(serde_json::to_string_pretty(&answer)?)
}
