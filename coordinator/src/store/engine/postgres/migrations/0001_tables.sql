-- Ferry's record store on PostgreSQL, schema version 1: one table per store table, keyed as
-- the store keys it (texts compare bytewise, as in the embedded engine: COLLATE "C"), each
-- value the encoded record (a format byte, then postcard). Counters in one table.
CREATE TABLE ferry.releases (k1 text COLLATE "C" NOT NULL, k2 text COLLATE "C" NOT NULL, v bytea NOT NULL, PRIMARY KEY (k1, k2));
CREATE TABLE ferry.aliases (k1 text COLLATE "C" NOT NULL, k2 text COLLATE "C" NOT NULL, v bytea NOT NULL, PRIMARY KEY (k1, k2));
CREATE TABLE ferry.devices (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.audit (k bigint PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.publisher_keys (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.blobs (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.chunk_indexes (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.tensor_layouts (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.rollouts (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.fragmentation (k1 text COLLATE "C" NOT NULL, k2 bigint NOT NULL, v bytea NOT NULL, PRIMARY KEY (k1, k2));
CREATE TABLE ferry.api_tokens (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.enroll_tokens (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.revoked_devices (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.trust_roots (k bigint PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE ferry.stages (k1 text COLLATE "C" NOT NULL, k2 text COLLATE "C" NOT NULL, v bytea NOT NULL, PRIMARY KEY (k1, k2));
CREATE TABLE ferry.purged (k1 text COLLATE "C" NOT NULL, k2 text COLLATE "C" NOT NULL, v bytea NOT NULL, PRIMARY KEY (k1, k2));
CREATE TABLE ferry.counters (tbl text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL, value bigint NOT NULL, PRIMARY KEY (tbl, name));
