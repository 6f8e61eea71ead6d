//! Standard output for the local commands (`status`, `rollback`): `println!` panics when its
//! pipe is closed (`ferry-agent status | head -1`); [`outln!`](crate::outln) ends the process
//! quietly instead, and any other write failure with a clear line and exit code 74.

use std::io::{self, Write};

/// `println!` that ends the process quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::stdout::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::stdout::line(format_args!($($arg)*)) };
}

/// Writes `args` and a newline to standard output, or ends the process: quietly (0) when
/// the reader went away, else saying why (74).
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let _ = writeln!(io::stderr(), "error: cannot write to standard output: {e}");
        std::process::exit(74);
    }
}
