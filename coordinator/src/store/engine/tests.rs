//! Both engines against one another: the same rows in, the same rows out, in the same order;
//! and the shared engine's one writer at a time, with several stores (nodes) on one database.

use std::collections::BTreeMap;

use super::postgres::Postgres;
use super::redb::Redb;
use super::{Engine, Number, Rows, Table, Text, TextNumber, TextPair, WriteTxn};
use crate::store::tables::{COUNTERS, all};
use crate::testkit::PostgresServer;

const TEXTS: Table<Text> = Table::new("devices");
const PAIRS: Table<TextPair> = Table::new("aliases");
const NUMBERS: Table<Number> = Table::new("audit");
const TEXT_NUMBERS: Table<TextNumber> = Table::new("fragmentation");

/// Keys whose byte order differs from other orders people expect: case, digits, a shared
/// prefix, bytes past ASCII, an empty text.
const AWKWARD: &[&str] = &["", "a", "B", "a-1", "a-10", "a-9", "ab", "é", "z", "Z", "ä"];

fn engines() -> Vec<(tempfile::TempDir, Box<dyn Engine>)> {
    let dir = tempfile::tempdir().unwrap();
    let redb = Redb::open(&dir.path().join("t.redb"), &all(), &COUNTERS).unwrap();
    let url = PostgresServer::shared().fresh_database();
    let postgres = Postgres::open(&url, &Default::default(), &all()).unwrap();
    vec![
        (dir, Box::new(redb)),
        (tempfile::tempdir().unwrap(), Box::new(postgres)),
    ]
}

/// Scans `table` of `engine` from `from`, forward or backward, as (key, value) pairs.
fn scanned<K: super::Shape>(
    engine: &dyn Engine,
    table: Table<K>,
    from: Option<K::Ref<'_>>,
    backward: bool,
) -> Vec<(K::Owned, Vec<u8>)> {
    let txn = super::ReadTxn::begin(engine).unwrap();
    let mut out = Vec::new();
    let scan = super::Scan {
        from: from.map(K::parts),
        backward,
    };
    txn.ops()
        .scan(table.id(), scan, &mut |key, value| {
            out.push((K::owned(key).unwrap(), value.to_vec()));
            Ok(true)
        })
        .unwrap();
    out
}

#[test]
fn both_engines_keep_and_order_every_key_shape_alike() {
    let mut expected_texts = BTreeMap::new();
    let mut expected_pairs = BTreeMap::new();
    let mut expected_numbers = BTreeMap::new();
    let mut expected_text_numbers = BTreeMap::new();
    for (i, a) in AWKWARD.iter().enumerate() {
        expected_texts.insert(a.to_string(), vec![i as u8]);
        for (j, b) in AWKWARD.iter().enumerate().take(4) {
            expected_pairs.insert((a.to_string(), b.to_string()), vec![i as u8, j as u8]);
        }
        for n in [0u64, 1, 9, 10, 1 << 40, i64::MAX as u64] {
            expected_text_numbers.insert((a.to_string(), n), vec![i as u8]);
        }
    }
    // More than a page of the shared engine's scans (512 rows).
    for n in 0..1300u64 {
        expected_numbers.insert(n * 7, n.to_be_bytes().to_vec());
    }
    for (_dir, engine) in engines() {
        let shown = engine.describe();
        let txn = WriteTxn::begin(&*engine, None).unwrap();
        for (k, v) in expected_texts.iter().rev() {
            txn.insert_raw(TEXTS, k.as_str(), v).unwrap();
        }
        for ((a, b), v) in &expected_pairs {
            txn.insert_raw(PAIRS, (a.as_str(), b.as_str()), v).unwrap();
        }
        for (n, v) in &expected_numbers {
            txn.insert_raw(NUMBERS, *n, v).unwrap();
        }
        for ((a, n), v) in &expected_text_numbers {
            txn.insert_raw(TEXT_NUMBERS, (a.as_str(), *n), v).unwrap();
        }
        // Written over and removed: only the last word counts.
        txn.insert_raw(TEXTS, "gone", b"x").unwrap();
        assert!(txn.remove(TEXTS, "gone").unwrap());
        assert!(!txn.remove(TEXTS, "never").unwrap());
        txn.insert_raw(NUMBERS, 7, b"first").unwrap();
        txn.insert_raw(NUMBERS, 7, &1u64.to_be_bytes()).unwrap();
        txn.commit().unwrap();

        let all_texts: Vec<_> = expected_texts.clone().into_iter().collect();
        assert_eq!(scanned(&*engine, TEXTS, None, false), all_texts, "{shown}");
        let mut backward = all_texts.clone();
        backward.reverse();
        assert_eq!(scanned(&*engine, TEXTS, None, true), backward, "{shown}");
        let from_a: Vec<_> = expected_texts
            .range("a-10".to_string()..)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            scanned(&*engine, TEXTS, Some("a-10"), false),
            from_a,
            "{shown}"
        );

        let all_pairs: Vec<_> = expected_pairs.clone().into_iter().collect();
        assert_eq!(scanned(&*engine, PAIRS, None, false), all_pairs, "{shown}");
        let from_pair: Vec<_> = expected_pairs
            .range(("a".to_string(), "a".to_string())..)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            scanned(&*engine, PAIRS, Some(("a", "a")), false),
            from_pair,
            "{shown}"
        );

        let numbers: Vec<_> = expected_numbers.clone().into_iter().collect();
        assert_eq!(scanned(&*engine, NUMBERS, None, false), numbers, "{shown}");
        let upto: Vec<_> = expected_numbers
            .range(..=700)
            .rev()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        assert_eq!(scanned(&*engine, NUMBERS, Some(700), true), upto, "{shown}");

        let text_numbers: Vec<_> = expected_text_numbers.clone().into_iter().collect();
        assert_eq!(
            scanned(&*engine, TEXT_NUMBERS, None, false),
            text_numbers,
            "{shown}"
        );

        let read = super::ReadTxn::begin(&*engine).unwrap();
        assert_eq!(read.get_raw(TEXTS, "é").unwrap(), Some(vec![7]), "{shown}");
        assert_eq!(read.get_raw(TEXTS, "gone").unwrap(), None, "{shown}");
        assert_eq!(
            read.last_raw(NUMBERS).unwrap().map(|(k, _)| k),
            Some(1299 * 7),
            "{shown}"
        );
    }
}

#[test]
fn both_engines_read_and_write_many_text_keys_at_once_as_one_by_one() {
    for (_dir, engine) in engines() {
        let shown = engine.describe();
        let txn = WriteTxn::begin(&*engine, None).unwrap();
        txn.insert_raw(TEXTS, "kept", b"old").unwrap();
        txn.insert_raw(TEXTS, "replaced", b"old").unwrap();
        // A key given twice ends with its last value; an empty batch writes nothing.
        let rows: Vec<(&str, &[u8])> = vec![
            ("replaced", b"first"),
            ("é", b"\x00\xff"),
            ("", b""),
            ("replaced", b"last"),
        ];
        txn.raw().insert_many(TEXTS.id(), &rows).unwrap();
        txn.raw().insert_many(TEXTS.id(), &[]).unwrap();
        // The transaction sees its own batched writes.
        let seen = txn
            .raw()
            .get_many(TEXTS.id(), &["replaced", "missing"])
            .unwrap();
        assert_eq!(seen, vec![Some(b"last".to_vec()), None], "{shown}");
        txn.commit().unwrap();

        let reader = super::ReadTxn::begin(&*engine).unwrap();
        let keys = ["missing", "replaced", "kept", "é", "", "kept"];
        let many = reader.ops().get_many(TEXTS.id(), &keys).unwrap();
        let one_by_one: Vec<Option<Vec<u8>>> = keys
            .iter()
            .map(|k| reader.get_raw(TEXTS, k).unwrap())
            .collect();
        assert_eq!(many, one_by_one, "{shown}");
        assert_eq!(
            many,
            vec![
                None,
                Some(b"last".to_vec()),
                Some(b"old".to_vec()),
                Some(b"\x00\xff".to_vec()),
                Some(Vec::new()),
                Some(b"old".to_vec()),
            ],
            "{shown}"
        );
        assert!(reader.ops().get_many(TEXTS.id(), &[]).unwrap().is_empty());
        // Batches take text keys only.
        assert!(
            reader.ops().get_many(NUMBERS.id(), &["1"]).is_err(),
            "{shown}"
        );
    }
}

#[test]
fn an_unfinished_write_leaves_nothing_and_a_reader_keeps_its_snapshot() {
    for (_dir, engine) in engines() {
        let shown = engine.describe();
        let txn = WriteTxn::begin(&*engine, None).unwrap();
        txn.insert_raw(TEXTS, "kept", b"1").unwrap();
        txn.commit().unwrap();

        let reader = super::ReadTxn::begin(&*engine).unwrap();
        assert_eq!(reader.get_raw(TEXTS, "kept").unwrap(), Some(b"1".to_vec()));
        let txn = WriteTxn::begin(&*engine, None).unwrap();
        txn.insert_raw(TEXTS, "kept", b"2").unwrap();
        txn.insert_raw(TEXTS, "dropped", b"x").unwrap();
        drop(txn);
        let txn = WriteTxn::begin(&*engine, None).unwrap();
        txn.insert_raw(TEXTS, "kept", b"3").unwrap();
        txn.commit().unwrap();

        assert_eq!(
            reader.get_raw(TEXTS, "kept").unwrap(),
            Some(b"1".to_vec()),
            "{shown}: a reader sees the snapshot it began with"
        );
        let fresh = super::ReadTxn::begin(&*engine).unwrap();
        assert_eq!(fresh.get_raw(TEXTS, "kept").unwrap(), Some(b"3".to_vec()));
        assert_eq!(fresh.get_raw(TEXTS, "dropped").unwrap(), None, "{shown}");
    }
}

/// Several coordinators writing at once through one PostgreSQL database: every audit entry
/// lands once, in one unbroken chain, and no counter value is handed out twice.
#[test]
fn stores_on_one_database_write_one_at_a_time() {
    use crate::store::Store;
    use crate::store::audit::Change;
    let url = PostgresServer::shared().fresh_database();
    let nodes: Vec<Store> = (0..3)
        .map(|_| Store::open_postgres(&url, &Default::default()).unwrap())
        .collect();
    let versions = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (n, store) in nodes.iter().enumerate() {
            for t in 0..2 {
                let versions = &versions;
                scope.spawn(move || {
                    for i in 0..40 {
                        store
                            .record(Change {
                                at: i,
                                actor: &format!("node{n}/{t}"),
                                action: "test",
                                subject: format!("{i}"),
                                detail: String::new(),
                            })
                            .unwrap();
                        let v = store.next_snapshot_version().unwrap();
                        versions.lock().unwrap().push(v);
                    }
                });
            }
        }
    });
    let verified = nodes[0].verify_audit(None).unwrap();
    assert!(verified.broken.is_none(), "{:?}", verified.broken);
    assert_eq!(verified.entries, 3 * 2 * 40);
    let mut versions = versions.into_inner().unwrap();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        3 * 2 * 40,
        "a snapshot version was handed out twice"
    );
}

/// A database the previous build made (schema version 1) is brought to this build's version
/// at open; one a newer build made is refused by name.
#[test]
fn the_shared_schema_migrates_forward_and_refuses_a_newer_one() {
    let url = PostgresServer::shared().fresh_database();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA ferry;
             CREATE TABLE ferry.schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());
             {}
             INSERT INTO ferry.schema_migrations (version, name) VALUES (1, 'tables');",
            include_str!("postgres/migrations/0001_tables.sql")
        ))
        .unwrap();
    let engine = Postgres::open(&url, &Default::default(), &all()).unwrap();
    let txn = WriteTxn::begin(&engine, None).unwrap();
    txn.insert_raw(crate::store::tables::LEASES, "x", b"1")
        .unwrap();
    txn.commit().unwrap();
    drop(engine);
    client
        .batch_execute("INSERT INTO ferry.schema_migrations (version, name) VALUES (99, 'future')")
        .unwrap();
    match Postgres::open(&url, &Default::default(), &all()) {
        Err(crate::store::StoreError::TooNew { found: 99, .. }) => {}
        Err(e) => panic!("refused, but not by name: {e}"),
        Ok(_) => panic!("opened a schema from a newer build"),
    }
}

/// Coordinators sharing a database serve one snapshot per model: the second node gets the
/// first one's (never an older one it signed itself), and a new version is signed once the
/// listing changes or the stored one ages.
#[test]
fn nodes_on_one_database_serve_the_same_snapshot() {
    use crate::store::Store;
    let url = PostgresServer::shared().fresh_database();
    let a = Store::open_postgres(&url, &Default::default()).unwrap();
    let b = Store::open_postgres(&url, &Default::default()).unwrap();
    let sign = |node: &'static str| move |version: u64| format!("{node} v{version}").into_bytes();
    let never = |_| -> Vec<u8> { panic!("signed again although a fresh one is stored") };
    let served =
        |s: crate::store::signed_snapshots::StoredSnapshot| String::from_utf8(s.bytes).unwrap();

    assert_eq!(
        served(a.signed_snapshot("m", b"one", 100, 50, sign("a")).unwrap()),
        "a v1"
    );
    assert_eq!(
        served(b.signed_snapshot("m", b"one", 110, 50, never).unwrap()),
        "a v1"
    );
    // The listing changed: signed anew, once, whichever node sees it first.
    assert_eq!(
        served(b.signed_snapshot("m", b"two", 120, 50, sign("b")).unwrap()),
        "b v2"
    );
    assert_eq!(
        served(a.signed_snapshot("m", b"two", 121, 50, never).unwrap()),
        "b v2"
    );
    // Aged past its freshness: signed anew.
    assert_eq!(
        served(a.signed_snapshot("m", b"two", 170, 50, sign("a")).unwrap()),
        "a v3"
    );
    // Another model has its own, under the same counter.
    assert_eq!(
        served(b.signed_snapshot("n", b"one", 171, 50, sign("b")).unwrap()),
        "b v4"
    );
    assert_eq!(
        served(b.signed_snapshot("m", b"two", 172, 50, never).unwrap()),
        "a v3"
    );
}

/// A commit that grows the audit trail on one node wakes the others' followers as it lands.
#[test]
fn a_commit_that_grows_the_audit_trail_wakes_the_other_nodes() {
    use crate::store::Store;
    use crate::store::audit::Change;
    let url = PostgresServer::shared().fresh_database();
    let a = Store::open_postgres(&url, &Default::default()).unwrap();
    let b = Store::open_postgres(&url, &Default::default()).unwrap();
    let (woken, wakes) = std::sync::mpsc::channel();
    b.on_change(Box::new(move || {
        let _ = woken.send(());
    }))
    .unwrap();
    let within = std::time::Duration::from_secs(20);
    // Once listening, it wakes for what it may have missed before.
    wakes.recv_timeout(within).unwrap();
    a.record(Change {
        at: 1,
        actor: "a",
        action: "test",
        subject: "s".into(),
        detail: String::new(),
    })
    .unwrap();
    wakes
        .recv_timeout(within)
        .expect("the other node was not woken by the commit");
}

/// Over TLS: a server whose certificate chains to the configured authority is reached
/// encrypted; one that does not is refused, and so is `sslmode=require` without an authority.
#[test]
fn the_database_is_reached_over_tls_verified_against_its_authority() {
    use crate::store::{PostgresAccess, Store};
    let server = PostgresServer::start_with_tls().unwrap();
    let url = format!("{}?sslmode=require", server.fresh_database());
    let trusted = PostgresAccess {
        ca_pem: server.ca_pem().map(<[u8]>::to_vec),
        ..PostgresAccess::default()
    };
    let store = Store::open_postgres(&url, &trusted).unwrap();
    assert_eq!(store.audit_head().unwrap(), 0);

    let err = Store::open_postgres(&url, &PostgresAccess::default())
        .err()
        .expect("sslmode=require without an authority");
    assert!(err.to_string().contains("metadata_ca_file"), "{err}");

    let stranger = PostgresServer::start_with_tls().unwrap();
    let wrong = PostgresAccess {
        ca_pem: stranger.ca_pem().map(<[u8]>::to_vec),
        ..PostgresAccess::default()
    };
    let err = Store::open_postgres(&url, &wrong)
        .err()
        .expect("a server whose certificate the authority did not sign");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
