//! Waiting for the student to save a file the exercise edits.
//!
//! The directories of the files are watched, not the files: editors often
//! save by writing a new file and renaming it over the old one, and a watch
//! on the old file would see it deleted and then nothing. inotify does the
//! watching (notify's recommended watcher on Linux); where it cannot (a
//! file system without inotify, the per-user watch limit reached), notify's
//! poll watcher compares the files every half second instead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{Config, Event, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};

/// How long to wait for more events after the first of a save: one save
/// is often several events (truncate, write, close, rename).
const SETTLE: Duration = Duration::from_millis(200);

/// The watch on an exercise's files.
pub struct FileWatch {
    files: HashSet<PathBuf>,
    events: Receiver<notify::Result<Event>>,
    // Kept alive: dropping a watcher stops it.
    _watcher: Box<dyn Watcher>,
}

impl FileWatch {
    /// Watches `files` (paths under `root`). Says on stderr when it falls
    /// back to polling.
    pub fn new(root: &Path, files: &[String]) -> anyhow::Result<FileWatch> {
        let files: HashSet<PathBuf> = files.iter().map(|file| root.join(file)).collect();
        let dirs: HashSet<&Path> = files.iter().filter_map(|file| file.parent()).collect();
        let (tx, events) = mpsc::channel();
        let watcher: Box<dyn Watcher> = match inotify_watcher(tx.clone(), &dirs) {
            Ok(watcher) => watcher,
            Err(err) => {
                eprintln!("(file watching unavailable: {err}; checking the files every 0.5 s)");
                let config = Config::default().with_poll_interval(Duration::from_millis(500));
                let mut watcher = PollWatcher::new(tx, config)?;
                for dir in &dirs {
                    watcher.watch(dir, RecursiveMode::NonRecursive)?;
                }
                Box::new(watcher)
            }
        };
        Ok(FileWatch {
            files,
            events,
            _watcher: watcher,
        })
    }

    /// Waits until one of the files changes, or `deadline` passes (then
    /// returns false).
    pub fn changed(&self, deadline: Option<Instant>) -> bool {
        loop {
            let event = match deadline {
                None => self
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    self.events.recv_timeout(left)
                }
            };
            match event {
                Ok(Ok(event)) if self.concerns_us(&event) => {
                    // The rest of this save: drain it.
                    while self.events.recv_timeout(SETTLE).is_ok() {}
                    return true;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    fn concerns_us(&self, event: &Event) -> bool {
        let touches = event.kind.is_create() || event.kind.is_modify() || event.kind.is_remove();
        touches && event.paths.iter().any(|path| self.files.contains(path))
    }
}

fn inotify_watcher(
    tx: mpsc::Sender<notify::Result<Event>>,
    dirs: &HashSet<&Path>,
) -> notify::Result<Box<dyn Watcher>> {
    let mut watcher = RecommendedWatcher::new(tx, Config::default())?;
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok(Box::new(watcher))
}
