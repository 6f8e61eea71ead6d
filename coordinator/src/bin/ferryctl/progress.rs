//! Progress of long transfers: bars drawn on stderr when it is a terminal, or, for programs
//! that run ferryctl (`--progress-lines`), one JSON object per line on stderr.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Smaller uploads finish before a bar would tell anything.
const MIN_BYTES: u64 = 4 * 1024 * 1024;

/// A bar for uploading `size` bytes of `file`: bytes, rate and time left; hidden when stderr
/// is not a terminal or the file is small.
pub(crate) fn upload_bar(size: u64, file: &Path) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    if size < MIN_BYTES || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        // 75 columns at most: fits an 80-column terminal.
        "{msg:16!} [{bar:20}] {bytes:>9}/{total_bytes:<9} {bytes_per_sec:>11} {eta:>3}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(
        file.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    );
    bar
}

/// How often a line is written at most while an upload runs (its last line always is).
const LINE_EVERY: Duration = Duration::from_millis(100);

/// Where an upload's progress goes.
#[derive(Clone)]
pub(crate) enum Meter {
    /// A bar (hidden unless stderr is a terminal and the file is large).
    Bar(ProgressBar),
    /// `{"progress":{"file":…,"sent":…,"total":…}}` lines on stderr.
    Lines(Arc<Lines>),
}

/// The state of a [`Meter::Lines`].
pub(crate) struct Lines {
    file: String,
    total: u64,
    sent: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Meter {
    /// A meter for uploading `size` bytes of `file`: JSON lines when `lines`, else a bar.
    pub(crate) fn upload(size: u64, file: &Path, lines: bool) -> Meter {
        if lines {
            Meter::Lines(Arc::new(Lines {
                file: file.display().to_string(),
                total: size,
                sent: AtomicU64::new(0),
                last: Mutex::new(None),
            }))
        } else {
            Meter::Bar(upload_bar(size, file))
        }
    }

    /// The bytes sent so far are `n` (an upload resumed from byte `n`).
    pub(crate) fn set_position(&self, n: u64) {
        match self {
            Meter::Bar(bar) => bar.set_position(n),
            Meter::Lines(lines) => {
                lines.sent.store(n, Ordering::Relaxed);
                lines.write(false);
            }
        }
    }

    /// `n` more bytes were sent.
    pub(crate) fn inc(&self, n: u64) {
        match self {
            Meter::Bar(bar) => bar.inc(n),
            Meter::Lines(lines) => {
                lines.sent.fetch_add(n, Ordering::Relaxed);
                lines.write(false);
            }
        }
    }

    /// The upload ended (done or not): the bar goes, the last line is written.
    pub(crate) fn finish(&self) {
        match self {
            Meter::Bar(bar) => bar.finish_and_clear(),
            Meter::Lines(lines) => lines.write(true),
        }
    }
}

impl Lines {
    /// Writes the progress line, unless one went out less than [`LINE_EVERY`] ago and this
    /// is not the `last`. A closed stderr loses the line, nothing else.
    fn write(&self, last: bool) {
        let mut at = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if !last && at.is_some_and(|t| now.duration_since(t) < LINE_EVERY) {
            return;
        }
        *at = Some(now);
        let line = serde_json::json!({
            "progress": {
                "file": self.file,
                "sent": self.sent.load(Ordering::Relaxed).min(self.total),
                "total": self.total,
            }
        });
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}
