//! Chunks in an S3-compatible object store: one object per frame, named
//! `PREFIX<2 hex>/<64 hex>.zst` as in the local directory, shared by every coordinator of a
//! fleet. Requests are signed with AWS Signature V4 (`rusty-s3`) and sent by a blocking HTTP
//! client (`ureq`, rustls with ring): the store's callers are synchronous. A frame read is
//! bounded in size before it is checked, so a misbehaving server cannot make the coordinator
//! hold more than one chunk's frame; what it returns is checked against the chunk's hash above
//! this engine, as from any other.
//!
//! A PUT that returns is durable and visible, so a batch writes each frame as it comes and its
//! finish has nothing left to do; nothing names a frame before the database commits the
//! artifact that holds it.

use std::time::Duration;

use ferry_shared::Digest;
use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use super::ChunkStoreError;
use super::backend::{ChunkBackend, ChunkFile, FrameBatch};

/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(300);

/// The largest frame read back: a chunk is at most a few MiB, and a zstd frame of it barely
/// larger; anything bigger is not a frame this store wrote.
const MAX_FRAME: u64 = 64 * 1024 * 1024;

/// How long one request may take, all of it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the chunks are and who may touch them.
#[derive(Clone)]
pub struct S3Location {
    /// The service's address (`http://127.0.0.1:8333`, `https://s3.eu-west-1.amazonaws.com`).
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Where in the bucket (empty, or ending in `/`).
    pub prefix: String,
    /// The region requests are signed for.
    pub region: String,
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
}

impl std::fmt::Debug for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(
            f,
            "s3://{}/{} at {} ({})",
            self.bucket, self.prefix, self.endpoint, self.region
        )
    }
}

/// Frames in an S3 bucket.
#[derive(Debug)]
pub struct S3 {
    location: S3Location,
    bucket: Bucket,
    credentials: Credentials,
    http: ureq::Agent,
}

impl S3 {
    /// The frames at `location`; checks the bucket answers.
    pub fn new(location: S3Location) -> Result<Self, ChunkStoreError> {
        let endpoint = location
            .endpoint
            .parse()
            .map_err(|e| remote("the endpoint", format!("{}: {e}", location.endpoint)))?;
        let bucket = Bucket::new(
            endpoint,
            UrlStyle::Path,
            location.bucket.clone(),
            location.region.clone(),
        )
        .map_err(|e| remote("the bucket", e.to_string()))?;
        let credentials =
            Credentials::new(location.access_key.clone(), location.secret_key.clone());
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_redirects(0)
            .build()
            .into();
        let s3 = Self {
            location,
            bucket,
            credentials,
            http,
        };
        let url = s3
            .bucket
            .head_bucket(Some(&s3.credentials))
            .sign(SIGNED_FOR);
        let status = s3.call("checking the bucket", s3.http.head(url.as_str()).call())?;
        if status.status() != 200 {
            return Err(remote(
                "checking the bucket",
                format!("{} answered {}", s3.describe(), status.status()),
            ));
        }
        Ok(s3)
    }

    /// The object name of chunk `hash`'s frame.
    fn key(&self, hash: &Digest) -> String {
        format!(
            "{}{}",
            self.location.prefix,
            ferry_shared::mirror::frame_path(hash)
        )
    }

    /// The answer to a request, or what went wrong on the way as an error about `what`.
    fn call(
        &self,
        what: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ChunkStoreError> {
        sent.map_err(|e| remote(what, format!("{}: {e}", self.describe())))
    }

    /// An answer that is not the success expected, as an error about `what`.
    fn refused(&self, what: &str, mut answer: ureq::http::Response<ureq::Body>) -> ChunkStoreError {
        let status = answer.status();
        let said = answer
            .body_mut()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        remote(
            what,
            format!("{} answered {status}: {}", self.describe(), said.trim()),
        )
    }

    /// HEAD of chunk `hash`'s frame: its length, or `None` when absent.
    fn head(&self, hash: &Digest) -> Result<Option<u64>, ChunkStoreError> {
        let key = self.key(hash);
        let url = self
            .bucket
            .head_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let what = format!("looking up {key}");
        let answer = self.call(&what, self.http.head(url.as_str()).call())?;
        match answer.status().as_u16() {
            200 => Ok(Some(content_length(&answer).unwrap_or(0))),
            404 => Ok(None),
            _ => Err(self.refused(&what, answer)),
        }
    }
}

fn content_length(answer: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    answer
        .headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn remote(what: &str, reason: String) -> ChunkStoreError {
    ChunkStoreError::Remote {
        what: what.to_owned(),
        reason,
    }
}

impl ChunkBackend for S3 {
    fn read_into(&self, hash: &Digest, into: &mut Vec<u8>) -> Result<(), ChunkStoreError> {
        let key = self.key(hash);
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let what = format!("reading {key}");
        let mut answer = self.call(&what, self.http.get(url.as_str()).call())?;
        match answer.status().as_u16() {
            200 => {}
            404 => return Err(ChunkStoreError::Missing(*hash)),
            _ => return Err(self.refused(&what, answer)),
        }
        let bytes = answer
            .body_mut()
            .with_config()
            .limit(MAX_FRAME)
            .read_to_vec()
            .map_err(|e| remote(&what, e.to_string()))?;
        into.extend_from_slice(&bytes);
        Ok(())
    }

    fn frame_len(&self, hash: &Digest) -> Result<u64, ChunkStoreError> {
        self.head(hash)?.ok_or(ChunkStoreError::Missing(*hash))
    }

    fn contains(&self, hash: &Digest) -> Result<bool, ChunkStoreError> {
        Ok(self.head(hash)?.is_some())
    }

    fn batch(&self) -> Box<dyn FrameBatch + '_> {
        Box::new(S3Batch {
            s3: self,
            put: std::sync::Mutex::default(),
        })
    }

    fn list(&self) -> Result<Vec<ChunkFile>, ChunkStoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            if !self.location.prefix.is_empty() {
                action.with_prefix(self.location.prefix.as_str());
            }
            if let Some(token) = &token {
                action.with_continuation_token(token.as_str());
            }
            let url = action.sign(SIGNED_FOR);
            let what = "listing the chunks";
            let mut answer = self.call(what, self.http.get(url.as_str()).call())?;
            if answer.status() != 200 {
                return Err(self.refused(what, answer));
            }
            let text = answer
                .body_mut()
                .with_config()
                .limit(64 * 1024 * 1024)
                .read_to_string()
                .map_err(|e| remote(what, e.to_string()))?;
            let page = ListObjectsV2::parse_response(&text)
                .map_err(|e| remote(what, format!("the listing does not parse: {e}")))?;
            for object in page.contents {
                let Some(hash) = object
                    .key
                    .rsplit('/')
                    .next()
                    .and_then(|name| name.strip_suffix(".zst"))
                    .and_then(|hex| hex.parse::<Digest>().ok())
                else {
                    continue;
                };
                out.push(ChunkFile {
                    hash,
                    size: object.size.unwrap_or(0),
                    modified: object
                        .last_modified
                        .as_deref()
                        .and_then(unix_seconds)
                        .unwrap_or(0),
                });
            }
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }

    fn remove(&self, hashes: &mut dyn Iterator<Item = &Digest>) -> Result<usize, ChunkStoreError> {
        let mut removed = 0;
        for hash in hashes {
            let key = self.key(hash);
            if self.head(hash)?.is_none() {
                continue;
            }
            let url = self
                .bucket
                .delete_object(Some(&self.credentials), &key)
                .sign(SIGNED_FOR);
            let what = format!("deleting {key}");
            let answer = self.call(&what, self.http.delete(url.as_str()).call())?;
            match answer.status().as_u16() {
                200 | 204 => removed += 1,
                404 => {}
                _ => return Err(self.refused(&what, answer)),
            }
        }
        Ok(removed)
    }

    fn describe(&self) -> String {
        format!("{:?}", self.location)
    }

    fn presigned(&self, hash: &Digest, valid_for: Duration) -> Option<String> {
        let key = self.key(hash);
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &key)
            .sign(valid_for);
        Some(url.to_string())
    }
}

/// A batch of frames written to S3 as they come.
struct S3Batch<'a> {
    s3: &'a S3,
    /// Frames this batch wrote.
    put: std::sync::Mutex<std::collections::HashSet<Digest>>,
}

impl FrameBatch for S3Batch<'_> {
    fn put(&self, hash: &Digest, frame: &[u8]) -> Result<bool, ChunkStoreError> {
        if !self
            .put
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(*hash)
        {
            return Ok(false);
        }
        let s3 = self.s3;
        let key = s3.key(hash);
        let url = s3
            .bucket
            .put_object(Some(&s3.credentials), &key)
            .sign(SIGNED_FOR);
        let what = format!("writing {key}");
        let answer = s3.call(&what, s3.http.put(url.as_str()).send(frame))?;
        if answer.status() != 200 {
            return Err(s3.refused(&what, answer));
        }
        Ok(true)
    }

    fn finish(self: Box<Self>) -> Result<(), ChunkStoreError> {
        Ok(())
    }
}

/// Seconds since the Unix epoch of an S3 timestamp (`2026-12-06T12:00:00.000Z`).
fn unix_seconds(text: &str) -> Option<u64> {
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.trim_end_matches('Z').split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let s = t.next()?.split('.').next()?.parse::<i64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + min * 60 + s).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::chunks::ChunkStore;
    use crate::testkit::S3Server;

    fn location(bucket: String) -> S3Location {
        let server = S3Server::shared();
        S3Location {
            endpoint: server.endpoint(),
            bucket,
            prefix: "chunks/".into(),
            region: S3Server::REGION.into(),
            access_key: S3Server::ACCESS_KEY.into(),
            secret_key: S3Server::SECRET_KEY.into(),
        }
    }

    /// A chunk store on a fresh bucket, and its engine.
    fn on_fresh_bucket() -> (tempfile::TempDir, ChunkStore, Arc<S3>) {
        let s3 = Arc::new(S3::new(location(S3Server::shared().fresh_bucket())).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::on(dir.path().to_owned(), s3.clone(), 3).unwrap();
        (dir, store, s3)
    }

    #[test]
    fn chunks_in_a_bucket_are_stored_once_read_back_checked_listed_and_removed() {
        let (_dir, store, s3) = on_fresh_bucket();
        let (a, b) = (b"alpha".repeat(1000), b"beta".repeat(3000));
        let (ha, hb) = (Digest::of(&a), Digest::of(&b));
        let ingest = store.ingest();
        ingest.put(&ha, &a).unwrap();
        ingest.put(&ha, &a).unwrap();
        ingest.put(&hb, &b).unwrap();
        let (chunks, bytes) = ingest.finish().unwrap();
        assert_eq!(chunks, 2);
        assert_eq!(store.read(&ha, a.len() as u32).unwrap().bytes, a);
        assert_eq!(store.read(&hb, b.len() as u32).unwrap().bytes, b);
        let mut listed = store.list().unwrap();
        listed.sort_by_key(|c| c.size);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed.iter().map(|c| c.size).sum::<u64>(), bytes);
        assert_eq!(
            store.frame_len(&ha).unwrap() + store.frame_len(&hb).unwrap(),
            bytes
        );
        assert!(listed.iter().all(|c| c.modified > 1_700_000_000));
        // A second batch stores nothing already there.
        let again = store.ingest();
        again.put(&ha, &a).unwrap();
        assert_eq!(again.finish().unwrap(), (0, 0));
        assert_eq!(store.remove([&ha]).unwrap(), 1);
        assert_eq!(store.remove([&ha]).unwrap(), 0);
        assert!(matches!(
            store.read(&ha, a.len() as u32),
            Err(ChunkStoreError::Missing(_))
        ));
        assert!(s3.contains(&hb).unwrap() && !s3.contains(&ha).unwrap());
    }

    /// An object that is not the frame of the chunk it is named for (garbage, or another
    /// chunk's frame) is refused, never returned as the chunk.
    #[test]
    fn an_object_that_is_not_its_chunk_is_refused() {
        let (_dir, store, s3) = on_fresh_bucket();
        let (a, b) = (b"alpha".repeat(1000), b"beta".repeat(1000));
        let (ha, hb) = (Digest::of(&a), Digest::of(&b));
        let ingest = store.ingest();
        ingest.put(&hb, &b).unwrap();
        ingest.finish().unwrap();
        let mut frame_b = Vec::new();
        s3.read_into(&hb, &mut frame_b).unwrap();
        let batch = s3.batch();
        batch.put(&ha, &frame_b).unwrap();
        batch.finish().unwrap();
        let err = store.read(&ha, b.len() as u32).unwrap_err();
        assert!(matches!(err, ChunkStoreError::Damaged { .. }), "{err}");
        let batch = s3.batch();
        batch.put(&ha, b"garbage").unwrap();
        batch.finish().unwrap();
        let err = store.read(&ha, a.len() as u32).unwrap_err();
        assert!(matches!(err, ChunkStoreError::Damaged { .. }), "{err}");
    }

    #[test]
    fn a_bucket_with_the_wrong_secret_or_none_at_all_is_refused_at_start() {
        let mut wrong = location(S3Server::shared().fresh_bucket());
        wrong.secret_key = "not the secret".into();
        let err = S3::new(wrong).unwrap_err().to_string();
        assert!(err.contains("403"), "{err}");
        assert!(
            !err.contains("not the secret"),
            "the secret was shown: {err}"
        );
        let err = S3::new(location("no-such-bucket".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("404"), "{err}");
    }

    #[test]
    fn s3_timestamps_read_as_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            unix_seconds("2026-12-06T12:00:00.000Z"),
            Some(1_796_558_400)
        );
        assert_eq!(unix_seconds("2000-03-01T00:00:01Z"), Some(951_868_801));
        assert_eq!(unix_seconds("garbage"), None);
    }

    #[test]
    fn a_presigned_address_serves_the_frame_without_credentials_for_a_while() {
        let (_dir, store, s3) = on_fresh_bucket();
        let chunk = b"mirrored".repeat(500);
        let hash = Digest::of(&chunk);
        let ingest = store.ingest();
        ingest.put(&hash, &chunk).unwrap();
        ingest.finish().unwrap();
        let url = store.presigned(&hash, Duration::from_secs(60)).unwrap();
        let frame = s3
            .http
            .get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        assert_eq!(zstd::decode_all(frame.as_slice()).unwrap(), chunk);
        // Without its signature the same address is refused: the bucket is not public.
        let bare = url.split('?').next().unwrap();
        assert_eq!(s3.http.get(bare).call().unwrap().status(), 403);
    }
}
