-- Schema version 8: each rollout's gate values over time (what the console charts).
CREATE TABLE ferry.gate_samples (k text COLLATE "C" PRIMARY KEY, v bytea NOT NULL);
