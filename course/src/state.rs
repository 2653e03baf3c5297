//! What the runner remembers between runs, in `target/course/state.json`:
//! each exercise's last checked result (valid while the files it edits and
//! its checker are unchanged), how many hints were shown, and whether the
//! solution was asked for.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::info::Exercise;

/// The result of the last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Solved,
    Unsolved,
}

/// What is remembered of one exercise.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Remembered {
    /// The fingerprint of the sources when `outcome` was found.
    pub fingerprint: Option<String>,
    pub outcome: Option<Outcome>,
    pub hints_shown: usize,
    pub solution_asked: bool,
    /// When the student first checked it or asked for a hint, and when it
    /// was first solved (seconds since 1970): a teacher's measure of how
    /// long it takes.
    #[serde(default)]
    pub started: Option<u64>,
    #[serde(default)]
    pub solved: Option<u64>,
}

impl Remembered {
    /// Minutes from the first try to the first solve, once solved.
    pub fn minutes_to_solve(&self) -> Option<f64> {
        Some((self.solved?.saturating_sub(self.started?)) as f64 / 60.0)
    }

    /// Notes that the student is at work on it, if not noted before.
    pub fn touch(&mut self) {
        self.started.get_or_insert_with(now);
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub exercises: BTreeMap<String, Remembered>,
    #[serde(skip)]
    path: PathBuf,
}

impl State {
    /// Reads the state of the course at `root`; a missing or unreadable
    /// file is a fresh start (it is only a cache and a counter).
    pub fn load(root: &Path) -> State {
        let path = root.join("target/course/state.json");
        let mut state: State = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        state.path = path;
        state
    }

    pub fn save(&self) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&self.path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    pub fn of(&mut self, exercise: &Exercise) -> &mut Remembered {
        self.exercises.entry(exercise.name.clone()).or_default()
    }

    /// The remembered outcome, if the sources are still those it was found
    /// with.
    pub fn cached(&self, exercise: &Exercise, fingerprint: &str) -> Option<Outcome> {
        let remembered = self.exercises.get(&exercise.name)?;
        (remembered.fingerprint.as_deref() == Some(fingerprint))
            .then_some(remembered.outcome)
            .flatten()
    }

    pub fn record(&mut self, exercise: &Exercise, fingerprint: String, outcome: Outcome) {
        let remembered = self.of(exercise);
        remembered.fingerprint = Some(fingerprint);
        remembered.outcome = Some(outcome);
        remembered.touch();
        if outcome == Outcome::Solved {
            remembered.solved.get_or_insert_with(now);
        }
    }
}

/// A fingerprint of what decides an exercise's outcome: the files it edits
/// and the checkers' source. FNV-1a, 64 bits: stable across runs and Rust
/// versions, and enough to notice an edit.
pub fn fingerprint(root: &Path, exercise: &Exercise) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let checkers = "tests/tests/exercises.rs".to_owned();
    for file in exercise.files.iter().chain([&checkers]) {
        let bytes = fs::read(root.join(file)).unwrap_or_default();
        for byte in file.bytes().chain([0]).chain(bytes) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
