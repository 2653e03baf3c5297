//! `cargo course`: the exercise runner of the book.
//!
//! Each exercise edits one of the workspace's servers; its checker is a test
//! in tests/tests/exercises.rs that starts the server and tries it. This
//! program lists the exercises in book order with their state, runs a
//! checker and shows why it failed in a few lines, gives hints one at a
//! time, re-checks on every save, puts the files back, and shows the
//! reference solution once it has been earned. `exercises/info.toml` says
//! what there is.
//!
//! ```sh
//! cargo course list            # what there is, what is done
//! cargo course check keep_alive
//! cargo course hint keep_alive
//! cargo course watch keep_alive
//! ```

mod checker;
mod git;
mod info;
mod state;
mod watch;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

use info::{Course, Exercise};
use state::{Outcome, State};

/// The exercises of "epoll, step by step": list them, check one, get a
/// hint, re-check on every save, start again, see the solution.
#[derive(Parser)]
#[command(name = "cargo course", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every exercise in book order, with its chapter, the files it edits
    /// and its state (solved, unsolved, not tried). Exercises whose files
    /// changed since their last check are checked again first.
    List {
        /// Check every edited exercise again, ignoring remembered results.
        #[arg(long)]
        fresh: bool,
        /// Print JSON (for teachers collecting progress).
        #[arg(long)]
        json: bool,
    },
    /// Run an exercise's checker; exits non-zero while it is unsolved.
    /// Without NAME, the next exercise not yet solved.
    Check { name: Option<String> },
    /// The next hint for an exercise, from mild to nearly the answer.
    Hint { name: String },
    /// Check an exercise, then again on every save of the files it edits,
    /// until it is solved.
    Watch {
        /// The exercise (default: the next one not yet solved).
        name: Option<String>,
        /// Give up after this many seconds (exit status 1).
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
    },
    /// Put the files an exercise edits back as they were at the start.
    Reset {
        name: String,
        /// Do not ask first.
        #[arg(long, short)]
        yes: bool,
    },
    /// The reference solution, once the exercise is solved or when asked
    /// for twice.
    Solution { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cargo course: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    let root = workspace_root()?;
    let course = Course::load(&root)?;
    let mut state = State::load(&root);
    let code = match command {
        Command::List { fresh, json } => list(&course, &mut state, fresh, json)?,
        Command::Check { name } => {
            let exercise = chosen(&course, &mut state, name.as_deref())?;
            check(&course, &mut state, exercise)?
        }
        Command::Hint { name } => hint(&course, &mut state, course.find(&name)?)?,
        Command::Watch { name, timeout } => {
            let exercise = chosen(&course, &mut state, name.as_deref())?;
            let timeout = timeout.map(Duration::from_secs_f64);
            watch(&course, &mut state, exercise, timeout)?
        }
        Command::Reset { name, yes } => reset(&course, &mut state, course.find(&name)?, yes)?,
        Command::Solution { name } => solution(&course, &mut state, course.find(&name)?)?,
    };
    state.save()?;
    Ok(code)
}

/// The workspace: the nearest directory above the current one that holds
/// `exercises/info.toml`, or the one this program was built from.
fn workspace_root() -> anyhow::Result<PathBuf> {
    let here = std::env::current_dir()?;
    if let Some(root) = here
        .ancestors()
        .find(|dir| dir.join("exercises/info.toml").is_file())
    {
        return Ok(root.to_path_buf());
    }
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("course/ has a parent")?;
    Ok(built_in.to_path_buf())
}

/// The state of an exercise as far as it is known without running its
/// checker: remembered for these very sources, or untouched since the
/// start (so not tried, and unsolved: CI checks every checker fails on
/// the untouched sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Solved,
    Unsolved,
    NotTried,
    /// Edited since the last check: run the checker to know.
    Unknown,
}

fn known(course: &Course, state: &State, base: Option<&str>, exercise: &Exercise) -> Known {
    let fingerprint = state::fingerprint(&course.root, exercise);
    match state.cached(exercise, &fingerprint) {
        Some(Outcome::Solved) => return Known::Solved,
        Some(Outcome::Unsolved) => return Known::Unsolved,
        None => {}
    }
    let untouched = base
        .is_some_and(|base| git::untouched(&course.root, base, &exercise.files).unwrap_or(false));
    if untouched {
        Known::NotTried
    } else {
        Known::Unknown
    }
}

/// `name`'s exercise, or without a name the first one in book order not
/// known to be solved.
fn chosen<'a>(
    course: &'a Course,
    state: &mut State,
    name: Option<&str>,
) -> anyhow::Result<&'a Exercise> {
    if let Some(name) = name {
        return course.find(name);
    }
    let base = git::base(&course.root).ok();
    course
        .exercises
        .iter()
        .find(|exercise| known(course, state, base.as_deref(), exercise) != Known::Solved)
        .context("every exercise is solved: well done")
}

fn list(course: &Course, state: &mut State, fresh: bool, json: bool) -> anyhow::Result<ExitCode> {
    let base = git::base(&course.root).ok();
    let titles = chapter_titles(&course.root);
    let mut rows = Vec::new();
    for exercise in &course.exercises {
        let mut now = known(course, state, base.as_deref(), exercise);
        if fresh && now != Known::NotTried {
            now = Known::Unknown;
        }
        if now == Known::Unknown {
            eprintln!("checking {} (its files changed)...", exercise.name);
            let report = checker::run(&course.root, exercise)?;
            let fingerprint = state::fingerprint(&course.root, exercise);
            state.record(exercise, fingerprint, report.outcome);
            now = match report.outcome {
                Outcome::Solved => Known::Solved,
                Outcome::Unsolved => Known::Unsolved,
            };
        }
        let label = match now {
            Known::Solved => "solved",
            Known::Unsolved => "unsolved",
            Known::NotTried | Known::Unknown => "not tried",
        };
        rows.push((exercise, label));
    }
    let solved = rows.iter().filter(|(_, label)| *label == "solved").count();
    let chapter = |exercise: &Exercise| {
        titles
            .iter()
            .find(|(file, _)| *file == exercise.chapter)
            .map_or(exercise.chapter.clone(), |(_, title)| title.clone())
    };
    if json {
        let exercises: Vec<serde_json::Value> = rows
            .iter()
            .map(|(exercise, label)| {
                let remembered = state.exercises.get(&exercise.name);
                serde_json::json!({
                    "name": exercise.name,
                    "title": exercise.title,
                    "chapter": chapter(exercise),
                    "files": exercise.files,
                    "state": label,
                    "hints_shown": remembered.map_or(0, |r| r.hints_shown),
                    "minutes_to_solve": remembered.and_then(|r| r.minutes_to_solve()),
                })
            })
            .collect();
        let report = serde_json::json!({
            "solved": solved,
            "total": rows.len(),
            "exercises": exercises,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let name_width = rows.iter().map(|(e, _)| e.name.len()).max().unwrap_or(0);
    let chapter_width = rows
        .iter()
        .map(|(e, _)| chapter(e).len())
        .max()
        .unwrap_or(0);
    println!(
        "{:>3}  {:<name_width$}  {:<9}  {:<chapter_width$}  edits",
        "#", "exercise", "state", "chapter"
    );
    for (number, (exercise, label)) in rows.iter().enumerate() {
        println!(
            "{:>3}  {:<name_width$}  {:<9}  {:<chapter_width$}  {}",
            number + 1,
            exercise.name,
            label,
            chapter(exercise),
            exercise.files.join(", ")
        );
    }
    println!();
    print!("{solved} of {} solved.", rows.len());
    if let Some((next, _)) = rows.iter().find(|(_, label)| *label != "solved") {
        print!(" Next: `cargo course check {}`", next.name);
    }
    println!();
    Ok(ExitCode::SUCCESS)
}

/// (file, title) of every chapter in book/src/SUMMARY.md, in order.
fn chapter_titles(root: &Path) -> Vec<(String, String)> {
    let summary = std::fs::read_to_string(root.join("book/src/SUMMARY.md")).unwrap_or_default();
    summary
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once('[')?;
            let (title, rest) = rest.split_once("](")?;
            let (file, _) = rest.split_once(')')?;
            Some((file.to_owned(), title.to_owned()))
        })
        .collect()
}

/// Runs the checker, prints the verdict, remembers it.
fn check(course: &Course, state: &mut State, exercise: &Exercise) -> anyhow::Result<ExitCode> {
    println!(
        "checking {} ({}): {}",
        exercise.name,
        exercise.title,
        checker::command_line(exercise)
    );
    let report = checker::run(&course.root, exercise)?;
    let fingerprint = state::fingerprint(&course.root, exercise);
    state.record(exercise, fingerprint, report.outcome);
    match report.outcome {
        Outcome::Solved => {
            println!("solved: {} passes its checker.", exercise.name);
            let next = course
                .exercises
                .iter()
                .skip_while(|e| e.name != exercise.name)
                .nth(1);
            if let Some(next) = next {
                println!("Next: `cargo course check {}` ({}).", next.name, next.title);
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Unsolved => {
            println!("not solved yet:");
            for line in &report.summary {
                println!("    {line}");
            }
            println!(
                "Edit {}, then check again. Stuck? `cargo course hint {}`",
                exercise.files.join(" and "),
                exercise.name
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn hint(course: &Course, state: &mut State, exercise: &Exercise) -> anyhow::Result<ExitCode> {
    let hints = info::hints(&course.dir(exercise))?;
    let remembered = state.of(exercise);
    remembered.touch();
    let index = remembered.hints_shown.min(hints.len() - 1);
    remembered.hints_shown = index + 1;
    println!(
        "Hint {} of {} for {} ({}):\n",
        index + 1,
        hints.len(),
        exercise.name,
        exercise.title
    );
    println!("{}\n", hints[index]);
    if index + 1 < hints.len() {
        println!(
            "(`cargo course hint {}` again for the next one.)",
            exercise.name
        );
    } else {
        println!(
            "That was the last hint. `cargo course solution {}` shows a reference solution.",
            exercise.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn watch(
    course: &Course,
    state: &mut State,
    exercise: &Exercise,
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let files = watch::FileWatch::new(&course.root, &exercise.files)?;
    let terminal = std::io::stdout().is_terminal();
    loop {
        if check(course, state, exercise)? == ExitCode::SUCCESS {
            return Ok(ExitCode::SUCCESS);
        }
        state.save()?;
        println!(
            "\nwatching {} for changes (Ctrl-C to stop)...",
            exercise.files.join(", ")
        );
        std::io::stdout().flush()?;
        if !files.changed(deadline) {
            println!(
                "gave up after {:.1} s without a solution.",
                timeout.unwrap_or_default().as_secs_f64()
            );
            return Ok(ExitCode::FAILURE);
        }
        if terminal {
            // Clear the screen and go home, so each run starts at the top.
            print!("\x1b[2J\x1b[H");
        } else {
            println!("\n--- changed, checking again ---");
        }
    }
}

fn reset(
    course: &Course,
    state: &mut State,
    exercise: &Exercise,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let base = git::base(&course.root)?;
    let short_base = &base[..base.len().min(10)];
    let (changed, uncommitted) = git::changed(&course.root, &base, &exercise.files)?;
    if changed.is_empty() {
        println!(
            "{}: its files are as they were at the start (commit {short_base}); nothing to reset.",
            exercise.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("reset puts these back as they were at commit {short_base}:");
    for file in &changed {
        println!("    {file}");
    }
    if !uncommitted.is_empty() {
        println!(
            "Your changes to {} are not committed: they will be lost. \
             (`git stash` keeps them, if you want them later.)",
            uncommitted.join(", ")
        );
    }
    if !yes && !confirm()? {
        println!("Nothing changed.");
        return Ok(ExitCode::FAILURE);
    }
    git::restore(&course.root, &base, &changed)?;
    let remembered = state.of(exercise);
    remembered.fingerprint = None;
    remembered.outcome = None;
    println!(
        "Reset. `cargo course check {}` to start again.",
        exercise.name
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks "Go on? [y/N]" on a terminal; anywhere else, the answer is no.
fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        println!("(not asked: standard input is not a terminal; pass --yes to reset anyway)");
        return Ok(false);
    }
    print!("Go on? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn solution(course: &Course, state: &mut State, exercise: &Exercise) -> anyhow::Result<ExitCode> {
    let solved = state
        .exercises
        .get(&exercise.name)
        .is_some_and(|remembered| remembered.outcome == Some(Outcome::Solved));
    let remembered = state.of(exercise);
    if !solved && !remembered.solution_asked {
        remembered.solution_asked = true;
        println!(
            "{} is not solved yet, and a solution read too early teaches little. \
             Try `cargo course hint {}` first. Ask once more to see it anyway.",
            exercise.name, exercise.name
        );
        return Ok(ExitCode::FAILURE);
    }
    let path = course.dir(exercise).join("solution.patch");
    let patch = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    println!(
        "A reference solution for {} ({}), as a patch (`git apply {}` applies it):\n",
        exercise.name,
        exercise.title,
        path.strip_prefix(&course.root).unwrap_or(&path).display()
    );
    print!("{patch}");
    Ok(ExitCode::SUCCESS)
}
