//! Progress bars for long transfers, drawn on stderr only when it is a terminal.

use std::path::Path;

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
        "{msg:20!} [{bar:24}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}",
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
