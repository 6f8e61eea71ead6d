-- Schema version 2: leases, which coordinator does work only one may do at a time.
CREATE TABLE ferry.leases (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
