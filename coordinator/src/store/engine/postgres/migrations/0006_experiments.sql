-- Schema version 6: A/B experiments (champion against challenger on a share of a cohort).
CREATE TABLE ferry.experiments (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
