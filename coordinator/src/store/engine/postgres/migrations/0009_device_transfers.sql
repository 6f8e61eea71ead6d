-- Schema version 9: what each coordinator sent each device, per artifact (the device page).
CREATE TABLE ferry.device_transfers (k1 text COLLATE "C" NOT NULL, k2 text COLLATE "C" NOT NULL, v bytea NOT NULL, PRIMARY KEY (k1, k2));
