-- Schema version 4: the TUF snapshot every coordinator serves, per model.
CREATE TABLE ferry.signed_snapshots (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
