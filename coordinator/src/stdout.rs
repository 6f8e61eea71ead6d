//! Standard output for the command-line tools. `println!` panics when its pipe is closed
//! (`ferryctl … | head -1`); [`outln!`](crate::outln) and [`out!`](crate::out) end the process
//! quietly instead, as other Unix tools do, and any other write failure with a clear line and
//! exit code 74 (`EX_IOERR`).

use std::io::{self, Write};

/// `println!` that ends the process quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::stdout::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::stdout::write(format_args!($($arg)*), true) };
}

/// `print!` that ends the process quietly on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::write(format_args!($($arg)*), false) };
}

/// Writes `args` (and a newline) to standard output, or ends the process.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = io::stdout().lock();
    let result = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = result {
        closed(&e);
    }
}

/// Ends the process after standard output failed: quietly (0) when the reader went away,
/// else saying why (74).
pub fn closed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    let _ = writeln!(io::stderr(), "error: cannot write to standard output: {e}");
    std::process::exit(74);
}
