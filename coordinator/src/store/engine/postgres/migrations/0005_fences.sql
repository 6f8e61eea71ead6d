-- Schema version 5: fences, a readers-writer lock across coordinators (garbage collection
-- against uploads, publishes and backups).
CREATE TABLE ferry.fences (k1 text COLLATE "C" NOT NULL, k2 text COLLATE "C" NOT NULL, v bytea NOT NULL, PRIMARY KEY (k1, k2));
