-- One database per service: each service owns its tables and nobody else writes them.
CREATE DATABASE rating;
CREATE DATABASE settlement;
CREATE DATABASE invoicing;
CREATE DATABASE payments;
