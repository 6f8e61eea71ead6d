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
