//! Mirrors on the device side: the untrusted places one download may take whole chunks from
//! before asking the coordinator (see [`ferry_shared::mirror`]). A [`Round`] lives for one
//! download attempt. It knows the device's own mirrors, those the coordinator tells of and
//! the pre-signed addresses it hands out, in that order of preference; it drops for the rest
//! of the attempt a source that errs, stalls or sends bytes that are not the signed chunk,
//! and it sends every chunk to the mirrors once at most, so what they fail to deliver comes
//! from the coordinator. [`http`] fetches one frame within bounds.
//!
//! Only chunks asked for whole (or against the version's own earlier bytes, on a first
//! install) go to mirrors: a delta against a version the device holds is the coordinator's
//! to encode, and is smaller than any stored frame.

pub mod http;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ferry_shared::Digest;
use ferry_shared::mirror::{MAX_MIRROR_URL, MirrorBase};
use ferry_shared::wire::{ChunkWant, SignedLocation};

pub use http::MirrorError;

/// The device's mirror settings (from its configuration).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The device's own mirrors, tried first.
    pub own: Vec<MirrorBase>,
    /// Longest one request may take.
    pub timeout: Duration,
}

/// Where a frame may come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A mirror, by its place in [`Round`]'s list.
    Mirror(usize),
    /// The pre-signed addresses the coordinator hands out (one bucket behind them all).
    Signed,
}

/// One address to try for one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Whose address it is.
    pub source: Source,
    /// The address.
    pub url: String,
}

/// What trying a chunk's candidates came to.
#[derive(Debug)]
pub struct Fetched {
    /// The chunk.
    pub ordinal: u32,
    /// The first frame delivered, and by whom (unchecked yet).
    pub frame: Option<(Source, Vec<u8>)>,
    /// The candidates that failed before it.
    pub failures: Vec<(Source, MirrorError)>,
}

/// Tries `candidates` in order until one delivers a frame of at most `limit` bytes.
pub fn fetch_first(
    client: &ureq::Agent,
    ordinal: u32,
    candidates: Vec<Candidate>,
    limit: usize,
) -> Fetched {
    let mut failures = Vec::new();
    for candidate in candidates {
        match http::get(client, &candidate.url, limit) {
            Ok(frame) => {
                return Fetched {
                    ordinal,
                    frame: Some((candidate.source, frame)),
                    failures,
                };
            }
            Err(e) => failures.push((candidate.source, e)),
        }
    }
    Fetched {
        ordinal,
        frame: None,
        failures,
    }
}

/// Whether the coordinator is still to be asked where chunks are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    /// Not asked yet.
    First,
    /// It hands out pre-signed addresses: ask for each group of chunks.
    Each,
    /// It has nothing more to say (no pre-signed addresses, an older coordinator, a
    /// failure).
    Never,
}

/// One download attempt's mirrors.
pub struct Round {
    client: ureq::Agent,
    /// Mirrors, the device's own first; with whether each is dropped.
    mirrors: Vec<(MirrorBase, bool)>,
    /// Pre-signed addresses by chunk.
    signed: HashMap<u32, String>,
    signed_dropped: bool,
    ask: Ask,
    /// Chunks already sent to the mirrors: they come from the coordinator from now on.
    tried: HashSet<u32>,
    /// Why each dropped source was dropped, for the log and the attempt's record.
    dropped: Vec<(String, String)>,
}

impl Round {
    /// A round over the device's own mirrors.
    pub fn new(settings: &Settings) -> Self {
        Self {
            client: http::client(settings.timeout),
            mirrors: settings.own.iter().map(|m| (m.clone(), false)).collect(),
            signed: HashMap::new(),
            signed_dropped: false,
            ask: Ask::First,
            tried: HashSet::new(),
            dropped: Vec::new(),
        }
    }

    /// The HTTP client (cheap to clone: one connection pool).
    pub fn client(&self) -> ureq::Agent {
        self.client.clone()
    }

    /// Whether to ask the coordinator where the next group of chunks is.
    pub fn wants_locations(&self) -> bool {
        self.ask != Ask::Never
    }

    /// The coordinator's answer: its mirrors (after the device's own, each once) and
    /// pre-signed addresses (those that are not plain http(s) addresses are ignored). A
    /// first answer without pre-signed addresses is the last asked for.
    pub fn told(&mut self, mirrors: Vec<MirrorBase>, signed: Vec<SignedLocation>) {
        for mirror in mirrors {
            if !self.mirrors.iter().any(|(m, _)| *m == mirror) {
                self.mirrors.push((mirror, false));
            }
        }
        let before = self.signed.len();
        self.signed.extend(
            signed
                .into_iter()
                .filter(|s| is_plain_address(&s.url))
                .map(|s| (s.ordinal, s.url)),
        );
        if self.ask == Ask::First {
            self.ask = if self.signed.len() > before {
                Ask::Each
            } else {
                Ask::Never
            };
        }
    }

    /// The coordinator is not to be asked again (it cannot answer, or did not).
    pub fn stop_asking(&mut self) {
        self.ask = Ask::Never;
    }

    /// Whether `want` (a chunk of the artifact `own`) is for the mirrors: a chunk asked for
    /// whole or against the artifact's own bytes, not sent to them before, while there may
    /// be a live source.
    pub fn takes(&self, want: &ChunkWant, own: &Digest) -> bool {
        want.reference.is_none_or(|r| r.file == *own)
            && !self.tried.contains(&want.ordinal)
            && (self.ask != Ask::Never
                || self.mirrors.iter().any(|(_, dropped)| !dropped)
                || (!self.signed_dropped && !self.signed.is_empty()))
    }

    /// Records that chunk `ordinal` was sent to the mirrors: whatever came of it, it is not
    /// sent again.
    pub fn mark_tried(&mut self, ordinal: u32) {
        self.tried.insert(ordinal);
    }

    /// Where to try chunk `ordinal` (hashing to `hash`), best first, leaving out dropped
    /// sources.
    pub fn candidates(&self, ordinal: u32, hash: &Digest) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = self
            .mirrors
            .iter()
            .enumerate()
            .filter(|(_, (_, dropped))| !dropped)
            .map(|(i, (base, _))| Candidate {
                source: Source::Mirror(i),
                url: base.frame_url(hash),
            })
            .collect();
        if !self.signed_dropped
            && let Some(url) = self.signed.get(&ordinal)
        {
            out.push(Candidate {
                source: Source::Signed,
                url: url.clone(),
            });
        }
        out
    }

    /// Whether `source` is still in use.
    pub fn is_live(&self, source: Source) -> bool {
        match source {
            Source::Mirror(i) => self.mirrors.get(i).is_some_and(|(_, dropped)| !dropped),
            Source::Signed => !self.signed_dropped,
        }
    }

    /// Drops `source` for the rest of the attempt; true the first time.
    pub fn drop_source(&mut self, source: Source, why: &MirrorError) -> bool {
        if !self.is_live(source) {
            return false;
        }
        match source {
            Source::Mirror(i) => {
                if let Some((_, dropped)) = self.mirrors.get_mut(i) {
                    *dropped = true;
                }
            }
            Source::Signed => self.signed_dropped = true,
        }
        self.dropped.push((self.describe(source), why.to_string()));
        true
    }

    /// A source, for people.
    pub fn describe(&self, source: Source) -> String {
        match source {
            Source::Mirror(i) => self
                .mirrors
                .get(i)
                .map_or_else(|| "a mirror".into(), |(base, _)| format!("mirror {base}")),
            Source::Signed => "the pre-signed bucket addresses".into(),
        }
    }

    /// The sources dropped so far, with why.
    pub fn dropped(&self) -> &[(String, String)] {
        &self.dropped
    }
}

/// A complete `http://` or `https://` address of sane length, without white space.
fn is_plain_address(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= MAX_MIRROR_URL
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use ferry_shared::wire::WindowRef;

    use super::*;

    fn base(text: &str) -> MirrorBase {
        MirrorBase::new(text).unwrap()
    }

    fn round(own: &[&str]) -> Round {
        Round::new(&Settings {
            own: own.iter().map(|m| base(m)).collect(),
            timeout: Duration::from_secs(1),
        })
    }

    fn whole(ordinal: u32) -> ChunkWant {
        ChunkWant {
            ordinal,
            reference: None,
        }
    }

    fn against(ordinal: u32, file: Digest) -> ChunkWant {
        ChunkWant {
            ordinal,
            reference: Some(WindowRef {
                file,
                offset: 0,
                len: 10,
                at: 0,
            }),
        }
    }

    #[test]
    fn own_mirrors_come_first_then_the_coordinators_then_the_signed_address() {
        let mut round = round(&["http://lan/"]);
        round.told(
            vec![base("http://cdn/"), base("http://lan/")],
            vec![SignedLocation {
                ordinal: 3,
                url: "https://s3/b/k?sig=1".into(),
            }],
        );
        let hash = Digest::of(b"c");
        let urls: Vec<String> = round
            .candidates(3, &hash)
            .into_iter()
            .map(|c| c.url)
            .collect();
        assert_eq!(
            urls,
            vec![
                base("http://lan/").frame_url(&hash),
                base("http://cdn/").frame_url(&hash),
                "https://s3/b/k?sig=1".to_owned(),
            ]
        );
        assert_eq!(
            round.candidates(4, &hash).len(),
            2,
            "no signed address for 4"
        );
        assert!(round.wants_locations(), "signed addresses come per group");
    }

    #[test]
    fn a_dropped_source_is_left_out_and_reported_once() {
        let mut round = round(&["http://a/", "http://b/"]);
        let why = MirrorError::Wrong("hash".into());
        assert!(round.drop_source(Source::Mirror(0), &why));
        assert!(!round.drop_source(Source::Mirror(0), &why));
        let hash = Digest::of(b"c");
        let left = round.candidates(0, &hash);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].source, Source::Mirror(1));
        assert_eq!(round.dropped().len(), 1);
        assert!(round.dropped()[0].0.contains("http://a/"));
    }

    #[test]
    fn only_whole_or_own_window_chunks_go_to_mirrors_and_each_only_once() {
        let own = Digest::of(b"new");
        let installed = Digest::of(b"old");
        let mut round = round(&["http://a/"]);
        assert!(round.takes(&whole(0), &own));
        assert!(round.takes(&against(1, own), &own));
        assert!(!round.takes(&against(2, installed), &own), "a delta");
        round.mark_tried(0);
        assert!(!round.takes(&whole(0), &own));
        round.stop_asking();
        round.drop_source(Source::Mirror(0), &MirrorError::Status(500));
        assert!(!round.takes(&whole(5), &own), "no source left");
    }

    #[test]
    fn a_coordinator_without_signed_addresses_is_asked_once() {
        let mut round = round(&[]);
        assert!(round.wants_locations());
        assert!(
            round.takes(&whole(0), &Digest::of(b"x")),
            "may learn of some"
        );
        round.told(vec![], vec![]);
        assert!(!round.wants_locations());
        assert!(!round.takes(&whole(0), &Digest::of(b"x")), "nothing to try");
    }

    #[test]
    fn signed_addresses_that_are_not_http_are_ignored() {
        let mut round = round(&[]);
        round.told(
            vec![],
            vec![
                SignedLocation {
                    ordinal: 0,
                    url: "file:///etc/shadow".into(),
                },
                SignedLocation {
                    ordinal: 1,
                    url: "http://s3/k?sig=1 x".into(),
                },
            ],
        );
        assert!(round.candidates(0, &Digest::of(b"c")).is_empty());
        assert!(round.candidates(1, &Digest::of(b"c")).is_empty());
        assert!(!round.wants_locations());
    }
}
