//! The course's starting point, from git: what an exercise's files looked
//! like before the student touched them, and putting them back.
//!
//! The starting point is the commit the student's work grew from: where
//! their branch leaves the upstream one (`git merge-base HEAD origin/HEAD`),
//! or HEAD when there is no upstream. Committing a solution does not make it
//! the starting point, so `reset` still goes back to the exercise.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, bail};

fn git(root: &Path, args: &[&str]) -> anyhow::Result<Output> {
    Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .context("cannot run git (is it installed?)")
}

/// The commit the exercises start from.
pub fn base(root: &Path) -> anyhow::Result<String> {
    for upstream in ["origin/HEAD", "origin/main", "origin/master"] {
        let out = git(root, &["merge-base", "HEAD", upstream])?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
    }
    let out = git(root, &["rev-parse", "HEAD"])?;
    if !out.status.success() {
        bail!(
            "{} is not a git checkout: `cargo course` needs git to know what the \
             exercises looked like before you started (clone the repository \
             with git)",
            root.display()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// True when `files` are as they were at `base`: the exercise is untouched.
pub fn untouched(root: &Path, base: &str, files: &[String]) -> anyhow::Result<bool> {
    let mut args = vec!["diff", "--quiet", base, "--"];
    args.extend(files.iter().map(String::as_str));
    let out = git(root, &args)?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!("git diff failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Which of `files` differ from `base`, and which of those have changes
/// that are not even committed (`git status`).
pub fn changed(
    root: &Path,
    base: &str,
    files: &[String],
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut changed = Vec::new();
    for file in files {
        if !untouched(root, base, std::slice::from_ref(file))? {
            changed.push(file.clone());
        }
    }
    let mut args = vec!["status", "--porcelain", "--"];
    args.extend(files.iter().map(String::as_str));
    let out = git(root, &args)?;
    let uncommitted = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.get(3..))
        .map(str::to_owned)
        .collect();
    Ok((changed, uncommitted))
}

/// Puts `files` back as they were at `base`.
pub fn restore(root: &Path, base: &str, files: &[String]) -> anyhow::Result<()> {
    let mut args = vec!["checkout", base, "--"];
    args.extend(files.iter().map(String::as_str));
    let out = git(root, &args)?;
    if !out.status.success() {
        bail!(
            "git checkout failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
