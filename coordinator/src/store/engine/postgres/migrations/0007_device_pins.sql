-- Schema version 7: devices an operator pinned to a version of a model.
CREATE TABLE ferry.device_pins (k1 text COLLATE "C" NOT NULL, k2 text COLLATE "C" NOT NULL, v bytea NOT NULL, PRIMARY KEY (k1, k2));
