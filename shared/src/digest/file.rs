//! The digest of a file on disk, hashed on two threads where there are two cores: BLAKE3 is a
//! tree, so the subtrees under its root hash apart and merge into the same digest.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};

use super::Digest;

/// Below this many bytes one thread hashes it all: a second would not pay for itself.
const PARALLEL_FROM: u64 = 4 * 1024 * 1024;
/// Bytes read at a time by each thread.
const READ: usize = 1 << 20;

impl Digest {
    /// The digest of the first `len` bytes of `file`, read with positioned reads (the file's
    /// offset is left alone). A file shorter than `len` is [`io::ErrorKind::UnexpectedEof`].
    /// Large files are hashed on two threads when the machine has two cores.
    pub fn of_file(file: &File, len: u64) -> io::Result<Digest> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let from = if cores > 1 { PARALLEL_FROM } else { u64::MAX };
        of_file_split(file, len, from)
    }
}

/// [`Digest::of_file`], on two threads once `len` reaches `parallel_from`.
fn of_file_split(file: &File, len: u64, parallel_from: u64) -> io::Result<Digest> {
    if len < parallel_from.max(2 * blake3::CHUNK_LEN as u64 + 1) {
        let mut hasher = blake3::Hasher::new();
        feed(&mut hasher, file, 0, len)?;
        return Ok(Digest(*hasher.finalize().as_bytes()));
    }
    // The root's children: a power-of-two left subtree of at least half the input, and the
    // rest. When the rest is under half the left, the left is split in two as well, and its
    // right half hashed with the rest, so neither thread hashes more than two thirds.
    let left = left_subtree_len(len);
    let rest = len - left;
    let (left_cv, right_cv) = if rest < left / 2 {
        let half = left / 2;
        let (first, others) = std::thread::scope(|scope| {
            let other = scope.spawn(|| {
                Ok::<_, io::Error>((subtree(file, half, half)?, subtree(file, left, rest)?))
            });
            let first = subtree(file, 0, half);
            (first, joined(other.join()))
        });
        let (second, last) = others?;
        (merge_subtrees_non_root(&first?, &second, Mode::Hash), last)
    } else {
        std::thread::scope(|scope| {
            let other = scope.spawn(|| subtree(file, left, rest));
            let first = subtree(file, 0, left);
            Ok::<_, io::Error>((first?, joined(other.join())?))
        })?
    };
    Ok(Digest(
        *merge_subtrees_root(&left_cv, &right_cv, Mode::Hash).as_bytes(),
    ))
}

/// A scoped thread's result; a panic in it is an error here, not a second panic.
fn joined<T>(result: std::thread::Result<io::Result<T>>) -> io::Result<T> {
    result.unwrap_or_else(|_| Err(io::Error::other("a hashing thread panicked")))
}

/// The chaining value of the subtree of `len` bytes at `offset` (a chunk boundary).
fn subtree(file: &File, offset: u64, len: u64) -> io::Result<ChainingValue> {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    feed(&mut hasher, file, offset, len)?;
    Ok(hasher.finalize_non_root())
}

/// Feeds `len` bytes of `file` from `offset` to `hasher`.
fn feed(hasher: &mut blake3::Hasher, file: &File, offset: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; READ.min(usize::try_from(len).unwrap_or(READ))];
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done).map_or(buf.len(), |left| left.min(buf.len()));
        let n = file.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ends at {} bytes, before {len}", offset + done),
            ));
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    /// Both splits (the rest large, the rest small), their edges, and inputs too short to
    /// split, against BLAKE3 of the bytes in one piece.
    #[test]
    fn split_hashing_gives_blake3_of_the_whole() {
        const K: usize = 1024;
        let bytes = noise(5, 3 * 1024 * K + 7);
        for len in [
            0,
            1,
            K,
            2 * K,
            2 * K + 1,
            4 * K,
            4 * K + 1,
            6 * K - 1,
            6 * K,
            6 * K + 1,
            1024 * K,
            1024 * K + 1,
            1536 * K,
            2047 * K + 5,
            3 * 1024 * K + 7,
        ] {
            let file = file_of(&bytes[..len]);
            let whole = Digest::of(&bytes[..len]);
            for from in [0, u64::MAX] {
                assert_eq!(
                    of_file_split(&file, len as u64, from).unwrap(),
                    whole,
                    "{len} bytes, from {from}"
                );
            }
            assert_eq!(Digest::of_file(&file, len as u64).unwrap(), whole);
        }
    }

    #[test]
    fn a_file_shorter_than_asked_is_an_error_on_either_path() {
        let bytes = noise(6, 64 * 1024);
        let file = file_of(&bytes);
        for from in [0, u64::MAX] {
            let err = of_file_split(&file, bytes.len() as u64 + 1, from).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "from {from}");
        }
    }
}
