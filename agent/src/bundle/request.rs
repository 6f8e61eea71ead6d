//! The hand-over of a bundle from `ferry-agent install-bundle` to the daemon: a request file
//! in the state directory naming the bundle, picked up by the daemon on its next tick. A
//! request made while the daemon is down waits for it to start.

use std::io;
use std::path::{Path, PathBuf};

/// The request file, in the state directory.
const REQUEST_FILE: &str = "bundle.request";

/// Asks the daemon to install the bundle at `bundle` (an absolute path), replacing any
/// request it has not picked up yet.
pub fn submit(state_dir: &Path, bundle: &Path) -> io::Result<()> {
    let text = bundle
        .to_str()
        .ok_or_else(|| io::Error::other("the bundle's path is not UTF-8"))?;
    crate::fsutil::write_atomic(&state_dir.join(REQUEST_FILE), text.as_bytes())
}

/// The bundle the daemon is asked to install, taken (the request file goes): `None` when
/// there is none. A request that cannot be read is dropped with the reason.
pub fn take(state_dir: &Path) -> Option<Result<PathBuf, String>> {
    let path = state_dir.join(REQUEST_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("{}: {e}", path.display()))),
    };
    if let Err(e) = std::fs::remove_file(&path) {
        return Some(Err(format!("cannot remove {}: {e}", path.display())));
    }
    Some(
        String::from_utf8(text)
            .map(|t| PathBuf::from(t.trim_end_matches('\n')))
            .map_err(|_| format!("{} is not UTF-8", path.display())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(take(dir.path()).is_none());
        submit(dir.path(), Path::new("/media/usb/detector.fbundle")).unwrap();
        assert_eq!(
            take(dir.path()),
            Some(Ok(PathBuf::from("/media/usb/detector.fbundle")))
        );
        assert!(take(dir.path()).is_none());
    }
}
