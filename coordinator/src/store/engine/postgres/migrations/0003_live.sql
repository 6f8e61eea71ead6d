-- Schema version 3: what each device is doing now, shared by the coordinators.
CREATE TABLE ferry.live (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
